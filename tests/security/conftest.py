"""The security suite: each attack of issue 13, run from an independent client against a
real cluster (gateway, nodes, SMTP, webhook over HTTP, a real mount where file modes
matter), on SQLite and PostgreSQL through the shared ``cluster`` fixture.

Tests assert what a user would notice (no bytes come back, no session, no quota change,
the file still downloads, memory stays bounded), not an error string alone.
"""
