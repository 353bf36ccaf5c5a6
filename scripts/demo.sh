#!/usr/bin/env bash
# One command for a fresh machine: install, start a gateway and three storage nodes on the
# embedded defaults (SQLite, OTP codes on the gateway console, the local Campay stand-in),
# sign a demo account in and mount it as ./CloudDrive.
#
#   scripts/demo.sh          # or: make demo      -> everything up, drive mounted
#   scripts/demo.sh stop     #                    -> unmount, stop every process it started
#   scripts/demo.sh status   #                    -> what is running
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DEMO=${DEMO_DIR:-$ROOT/demo}
MOUNT=${DEMO_MOUNT:-$ROOT/CloudDrive}
EMAIL=${DEMO_EMAIL:-demo@example.com}
PORT=${GRPC_SERVER_PORT:-50051}
VENV=${VENV:-$ROOT/.venv}
BIN=$VENV/bin
export CLOUDGRPC_SERVER="localhost:$PORT"

stop() {
  if mountpoint -q "$MOUNT" 2>/dev/null; then
    "$BIN/cloudgrpc" umount "$MOUNT" || fusermount3 -u "$MOUNT" || true
  fi
  if [ -f "$DEMO/pids" ]; then
    while read -r pid name; do
      if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid" && echo "stopped $name ($pid)"; fi
    done < "$DEMO/pids"
    rm -f "$DEMO/pids"
  fi
}

status() {
  [ -f "$DEMO/pids" ] || { echo "demo not running"; return 0; }
  while read -r pid name; do
    if kill -0 "$pid" 2>/dev/null; then echo "running  $name ($pid)"; else echo "stopped  $name"; fi
  done < "$DEMO/pids"
  mountpoint -q "$MOUNT" && echo "mounted  $MOUNT"
  return 0
}

wait_for() {  # wait_for FILE PATTERN SECONDS
  local i
  for i in $(seq 1 $(( $3 * 10 ))); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "timed out waiting for '$2' in $1:" >&2; tail -20 "$1" >&2; return 1
}

case "${1:-start}" in
  stop) stop; exit 0 ;;
  status) status; exit 0 ;;
  start) ;;
  *) echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac

# 1. What the machine needs: the Debian packages (scripts/system-packages.sh owns the list;
#    installed as root, named in one line otherwise), then the virtualenv.
scripts/system-packages.sh demo
make -s install
# The demo folder holds the logs (the gateway console shows sign-in codes: no mail is set up),
# the database, keys and chunks: nobody else on the machine may read it.
umask 077
mkdir -p "$DEMO"
chmod 700 "$DEMO"
[ -f "$DEMO/pids" ] && { echo "the demo already runs (scripts/demo.sh stop first)"; status; exit 0; }

# 2. Gateway and three nodes, in the background, logs under demo/. The gateway writes the
#    cluster secret into DATA_DIR (cluster_secret, 0600) on first start and the nodes, with
#    the same DATA_DIR, find it there (CLUSTER_SECRET, if set, is used by all instead); each
#    node keeps the key the gateway issues it in its own folder (node_key, 0600).
export DATA_DIR="$DEMO/data"
: > "$DEMO/gateway.log"
CAMPAY_STANDIN=1 "$BIN/cloudgrpc-gateway" --port "$PORT" > "$DEMO/gateway.log" 2>&1 &
echo "$! gateway" >> "$DEMO/pids"
wait_for "$DEMO/gateway.log" "Server listening on port" 60
for i in 1 2 3; do
  "$BIN/cloudgrpc-node" "node$i" localhost $((9000 + i)) 2 --gateway "localhost:$PORT" \
    --data-dir "$DEMO/node_storage_node$i" > "$DEMO/node$i.log" 2>&1 &
  echo "$! node$i" >> "$DEMO/pids"
done
for i in 1 2 3; do wait_for "$DEMO/node$i.log" "registered with gateway" 60; done

# 3. The demo account: the code comes from the gateway console (no mail configured).
code_from_console() {
  local before=$1 line
  for _ in $(seq 1 100); do
    line=$(grep "\[OTP\] code for $EMAIL" "$DEMO/gateway.log" | tail -n +$((before + 1)) | tail -1 || true)
    if [ -n "$line" ]; then echo "$line" | sed -E 's/.*: ([0-9]{6}).*/\1/'; return 0; fi
    sleep 0.1
  done
  echo "no code on the gateway console" >&2; return 1
}
if ! "$BIN/cloudgrpc" whoami >/dev/null 2>&1; then
  before=$(grep -c "\[OTP\] code for $EMAIL" "$DEMO/gateway.log" || true)
  if "$BIN/cloudgrpc" enroll "$EMAIL" "Demo User" --send-code >/dev/null 2>&1; then
    "$BIN/cloudgrpc" enroll "$EMAIL" "Demo User" --otp "$(code_from_console "$before")" \
      || { before=$(grep -c "\[OTP\] code for $EMAIL" "$DEMO/gateway.log" || true)
           "$BIN/cloudgrpc" login "$EMAIL" --send-code >/dev/null
           "$BIN/cloudgrpc" login "$EMAIL" --otp "$(code_from_console "$before")"; }
  fi
fi

# 4. The drive.
mkdir -p "$MOUNT"
mountpoint -q "$MOUNT" || "$BIN/cloudgrpc" mount "$MOUNT"
cat <<EOF

CloudGrpc is running: gateway localhost:$PORT, nodes localhost:9001-9003, data in $DEMO
Signed in as $EMAIL; the drive is mounted at $MOUNT

  cp -r ~/some/folder $MOUNT/ && ls -la $MOUNT && df -h $MOUNT
  $BIN/cloudgrpc ls /                     # the same files without the mount
  $BIN/cloudgrpc-pay tiers                # buy space (offline Campay stand-in)
  DATA_DIR=$DATA_DIR $BIN/cloudgrpc-admin --status   # the admin key is kept in $DATA_DIR/admin_key
Stop everything: scripts/demo.sh stop
EOF
