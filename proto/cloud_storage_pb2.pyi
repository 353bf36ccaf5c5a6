from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SendOTPRequest(_message.Message):
    __slots__ = ("email",)
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    email: str
    def __init__(self, email: _Optional[str] = ...) -> None: ...

class SendOTPResponse(_message.Message):
    __slots__ = ("success", "message", "retry_after_seconds")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_SECONDS_FIELD_NUMBER: _ClassVar[int]
    success: bool
    message: str
    retry_after_seconds: int
    def __init__(self, success: _Optional[bool] = ..., message: _Optional[str] = ..., retry_after_seconds: _Optional[int] = ...) -> None: ...

class VerifyOTPRequest(_message.Message):
    __slots__ = ("email", "otp")
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    OTP_FIELD_NUMBER: _ClassVar[int]
    email: str
    otp: str
    def __init__(self, email: _Optional[str] = ..., otp: _Optional[str] = ...) -> None: ...

class VerifyOTPResponse(_message.Message):
    __slots__ = ("success", "message", "verification_token", "attempts_left")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    VERIFICATION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_LEFT_FIELD_NUMBER: _ClassVar[int]
    success: bool
    message: str
    verification_token: str
    attempts_left: int
    def __init__(self, success: _Optional[bool] = ..., message: _Optional[str] = ..., verification_token: _Optional[str] = ..., attempts_left: _Optional[int] = ...) -> None: ...

class EnrollRequest(_message.Message):
    __slots__ = ("email", "full_name", "verification_token", "device_name")
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    FULL_NAME_FIELD_NUMBER: _ClassVar[int]
    VERIFICATION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    DEVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    email: str
    full_name: str
    verification_token: str
    device_name: str
    def __init__(self, email: _Optional[str] = ..., full_name: _Optional[str] = ..., verification_token: _Optional[str] = ..., device_name: _Optional[str] = ...) -> None: ...

class EnrollResponse(_message.Message):
    __slots__ = ("success", "message", "session_token", "user_id", "refresh_token", "expires_at", "storage_allocated")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    REFRESH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    STORAGE_ALLOCATED_FIELD_NUMBER: _ClassVar[int]
    success: bool
    message: str
    session_token: str
    user_id: str
    refresh_token: str
    expires_at: int
    storage_allocated: int
    def __init__(self, success: _Optional[bool] = ..., message: _Optional[str] = ..., session_token: _Optional[str] = ..., user_id: _Optional[str] = ..., refresh_token: _Optional[str] = ..., expires_at: _Optional[int] = ..., storage_allocated: _Optional[int] = ...) -> None: ...

class LoginRequest(_message.Message):
    __slots__ = ("email", "verification_token", "device_name")
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    VERIFICATION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    DEVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    email: str
    verification_token: str
    device_name: str
    def __init__(self, email: _Optional[str] = ..., verification_token: _Optional[str] = ..., device_name: _Optional[str] = ...) -> None: ...

class LoginResponse(_message.Message):
    __slots__ = ("success", "message", "session_token", "user_id", "refresh_token", "expires_at")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    REFRESH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    success: bool
    message: str
    session_token: str
    user_id: str
    refresh_token: str
    expires_at: int
    def __init__(self, success: _Optional[bool] = ..., message: _Optional[str] = ..., session_token: _Optional[str] = ..., user_id: _Optional[str] = ..., refresh_token: _Optional[str] = ..., expires_at: _Optional[int] = ...) -> None: ...

class LogoutRequest(_message.Message):
    __slots__ = ("session_token", "refresh_token")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REFRESH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    refresh_token: str
    def __init__(self, session_token: _Optional[str] = ..., refresh_token: _Optional[str] = ...) -> None: ...

class LogoutResponse(_message.Message):
    __slots__ = ("success", "message")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    success: bool
    message: str
    def __init__(self, success: _Optional[bool] = ..., message: _Optional[str] = ...) -> None: ...

class RefreshSessionRequest(_message.Message):
    __slots__ = ("refresh_token",)
    REFRESH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    refresh_token: str
    def __init__(self, refresh_token: _Optional[str] = ...) -> None: ...

class WhoAmIRequest(_message.Message):
    __slots__ = ("session_token",)
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    def __init__(self, session_token: _Optional[str] = ...) -> None: ...

class WhoAmIResponse(_message.Message):
    __slots__ = ("success", "user_id", "email", "full_name", "session_expires_at")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    FULL_NAME_FIELD_NUMBER: _ClassVar[int]
    SESSION_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    success: bool
    user_id: str
    email: str
    full_name: str
    session_expires_at: int
    def __init__(self, success: _Optional[bool] = ..., user_id: _Optional[str] = ..., email: _Optional[str] = ..., full_name: _Optional[str] = ..., session_expires_at: _Optional[int] = ...) -> None: ...

class ListDevicesRequest(_message.Message):
    __slots__ = ("session_token",)
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    def __init__(self, session_token: _Optional[str] = ...) -> None: ...

class DeviceInfo(_message.Message):
    __slots__ = ("device_id", "name", "created_at", "last_used_at", "last_address", "expires_at", "current")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    name: str
    created_at: int
    last_used_at: int
    last_address: str
    expires_at: int
    current: bool
    def __init__(self, device_id: _Optional[str] = ..., name: _Optional[str] = ..., created_at: _Optional[int] = ..., last_used_at: _Optional[int] = ..., last_address: _Optional[str] = ..., expires_at: _Optional[int] = ..., current: _Optional[bool] = ...) -> None: ...

class ListDevicesResponse(_message.Message):
    __slots__ = ("success", "devices")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    success: bool
    devices: _containers.RepeatedCompositeFieldContainer[DeviceInfo]
    def __init__(self, success: _Optional[bool] = ..., devices: _Optional[_Iterable[_Union[DeviceInfo, _Mapping]]] = ...) -> None: ...

class RevokeDeviceRequest(_message.Message):
    __slots__ = ("session_token", "device_id")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    device_id: str
    def __init__(self, session_token: _Optional[str] = ..., device_id: _Optional[str] = ...) -> None: ...

class RevokeDeviceResponse(_message.Message):
    __slots__ = ("success", "message", "sessions_ended")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_ENDED_FIELD_NUMBER: _ClassVar[int]
    success: bool
    message: str
    sessions_ended: int
    def __init__(self, success: _Optional[bool] = ..., message: _Optional[str] = ..., sessions_ended: _Optional[int] = ...) -> None: ...

class FolderChange(_message.Message):
    __slots__ = ("create", "move")
    CREATE_FIELD_NUMBER: _ClassVar[int]
    MOVE_FIELD_NUMBER: _ClassVar[int]
    create: CreateFolderRequest
    move: MoveEntryRequest
    def __init__(self, create: _Optional[_Union[CreateFolderRequest, _Mapping]] = ..., move: _Optional[_Union[MoveEntryRequest, _Mapping]] = ...) -> None: ...

class ApplyFolderChangesRequest(_message.Message):
    __slots__ = ("session_token", "changes")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    changes: _containers.RepeatedCompositeFieldContainer[FolderChange]
    def __init__(self, session_token: _Optional[str] = ..., changes: _Optional[_Iterable[_Union[FolderChange, _Mapping]]] = ...) -> None: ...

class FolderChangeResult(_message.Message):
    __slots__ = ("entry", "error_code", "error_message")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    entry: EntryResponse
    error_code: str
    error_message: str
    def __init__(self, entry: _Optional[_Union[EntryResponse, _Mapping]] = ..., error_code: _Optional[str] = ..., error_message: _Optional[str] = ...) -> None: ...

class ApplyFolderChangesResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[FolderChangeResult]
    def __init__(self, results: _Optional[_Iterable[_Union[FolderChangeResult, _Mapping]]] = ...) -> None: ...

class LinkFileRequest(_message.Message):
    __slots__ = ("session_token", "file_id", "parent_folder_id", "name")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_FOLDER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    file_id: str
    parent_folder_id: str
    name: str
    def __init__(self, session_token: _Optional[str] = ..., file_id: _Optional[str] = ..., parent_folder_id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class UploadSmallFilesRequest(_message.Message):
    __slots__ = ("session_token", "files")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    files: _containers.RepeatedCompositeFieldContainer[SmallFileUpload]
    def __init__(self, session_token: _Optional[str] = ..., files: _Optional[_Iterable[_Union[SmallFileUpload, _Mapping]]] = ...) -> None: ...

class SmallFileUpload(_message.Message):
    __slots__ = ("metadata", "data")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    metadata: FileMetadata
    data: bytes
    def __init__(self, metadata: _Optional[_Union[FileMetadata, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class UploadSmallFilesResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SmallFileResult]
    def __init__(self, results: _Optional[_Iterable[_Union[SmallFileResult, _Mapping]]] = ...) -> None: ...

class SmallFileResult(_message.Message):
    __slots__ = ("upload", "error_code", "error")
    UPLOAD_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    upload: UploadFileResponse
    error_code: str
    error: str
    def __init__(self, upload: _Optional[_Union[UploadFileResponse, _Mapping]] = ..., error_code: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class DownloadSmallFilesRequest(_message.Message):
    __slots__ = ("session_token", "file_ids", "max_file_size")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILE_IDS_FIELD_NUMBER: _ClassVar[int]
    MAX_FILE_SIZE_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    file_ids: _containers.RepeatedScalarFieldContainer[str]
    max_file_size: int
    def __init__(self, session_token: _Optional[str] = ..., file_ids: _Optional[_Iterable[str]] = ..., max_file_size: _Optional[int] = ...) -> None: ...

class SmallFileContent(_message.Message):
    __slots__ = ("file_id", "version", "data", "error")
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    file_id: str
    version: int
    data: bytes
    error: str
    def __init__(self, file_id: _Optional[str] = ..., version: _Optional[int] = ..., data: _Optional[bytes] = ..., error: _Optional[str] = ...) -> None: ...

class UploadFileRequest(_message.Message):
    __slots__ = ("metadata", "chunk_data", "chunk_ref")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CHUNK_DATA_FIELD_NUMBER: _ClassVar[int]
    CHUNK_REF_FIELD_NUMBER: _ClassVar[int]
    metadata: FileMetadata
    chunk_data: bytes
    chunk_ref: ChunkRef
    def __init__(self, metadata: _Optional[_Union[FileMetadata, _Mapping]] = ..., chunk_data: _Optional[bytes] = ..., chunk_ref: _Optional[_Union[ChunkRef, _Mapping]] = ...) -> None: ...

class ChunkRef(_message.Message):
    __slots__ = ("sha256", "size", "receipts")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    RECEIPTS_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    size: int
    receipts: _containers.RepeatedCompositeFieldContainer[ChunkReceipt]
    def __init__(self, sha256: _Optional[str] = ..., size: _Optional[int] = ..., receipts: _Optional[_Iterable[_Union[ChunkReceipt, _Mapping]]] = ...) -> None: ...

class ChunkReceipt(_message.Message):
    __slots__ = ("node_id", "receipt")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    receipt: str
    def __init__(self, node_id: _Optional[str] = ..., receipt: _Optional[str] = ...) -> None: ...

class FileMetadata(_message.Message):
    __slots__ = ("session_token", "filename", "file_size", "mime_type", "parent_folder_id", "overwrite_file_id", "replace_existing", "mode", "mtime_ns", "expected_version", "uid", "gid", "upload_id", "parent_mtime_ns", "rdev")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    FILE_SIZE_FIELD_NUMBER: _ClassVar[int]
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    PARENT_FOLDER_ID_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FILE_ID_FIELD_NUMBER: _ClassVar[int]
    REPLACE_EXISTING_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    MTIME_NS_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_MTIME_NS_FIELD_NUMBER: _ClassVar[int]
    RDEV_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    filename: str
    file_size: int
    mime_type: str
    parent_folder_id: str
    overwrite_file_id: str
    replace_existing: bool
    mode: int
    mtime_ns: int
    expected_version: int
    uid: int
    gid: int
    upload_id: str
    parent_mtime_ns: int
    rdev: int
    def __init__(self, session_token: _Optional[str] = ..., filename: _Optional[str] = ..., file_size: _Optional[int] = ..., mime_type: _Optional[str] = ..., parent_folder_id: _Optional[str] = ..., overwrite_file_id: _Optional[str] = ..., replace_existing: _Optional[bool] = ..., mode: _Optional[int] = ..., mtime_ns: _Optional[int] = ..., expected_version: _Optional[int] = ..., uid: _Optional[int] = ..., gid: _Optional[int] = ..., upload_id: _Optional[str] = ..., parent_mtime_ns: _Optional[int] = ..., rdev: _Optional[int] = ...) -> None: ...

class UploadFileResponse(_message.Message):
    __slots__ = ("success", "message", "file_id", "chunks_stored", "chunks_deduplicated", "entry")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_STORED_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_DEDUPLICATED_FIELD_NUMBER: _ClassVar[int]
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    success: bool
    message: str
    file_id: str
    chunks_stored: int
    chunks_deduplicated: int
    entry: FileEntry
    def __init__(self, success: _Optional[bool] = ..., message: _Optional[str] = ..., file_id: _Optional[str] = ..., chunks_stored: _Optional[int] = ..., chunks_deduplicated: _Optional[int] = ..., entry: _Optional[_Union[FileEntry, _Mapping]] = ...) -> None: ...

class DownloadFileRequest(_message.Message):
    __slots__ = ("session_token", "file_id", "offset", "length")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    file_id: str
    offset: int
    length: int
    def __init__(self, session_token: _Optional[str] = ..., file_id: _Optional[str] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ...) -> None: ...

class DownloadFileResponse(_message.Message):
    __slots__ = ("file_info", "chunk_data")
    FILE_INFO_FIELD_NUMBER: _ClassVar[int]
    CHUNK_DATA_FIELD_NUMBER: _ClassVar[int]
    file_info: FileInfo
    chunk_data: bytes
    def __init__(self, file_info: _Optional[_Union[FileInfo, _Mapping]] = ..., chunk_data: _Optional[bytes] = ...) -> None: ...

class FileInfo(_message.Message):
    __slots__ = ("file_id", "filename", "file_size", "mime_type", "created_at", "modified_at", "offset", "length", "version", "nlink")
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    FILE_SIZE_FIELD_NUMBER: _ClassVar[int]
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    MODIFIED_AT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    NLINK_FIELD_NUMBER: _ClassVar[int]
    file_id: str
    filename: str
    file_size: int
    mime_type: str
    created_at: str
    modified_at: str
    offset: int
    length: int
    version: int
    nlink: int
    def __init__(self, file_id: _Optional[str] = ..., filename: _Optional[str] = ..., file_size: _Optional[int] = ..., mime_type: _Optional[str] = ..., created_at: _Optional[str] = ..., modified_at: _Optional[str] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ..., version: _Optional[int] = ..., nlink: _Optional[int] = ...) -> None: ...

class ListFilesRequest(_message.Message):
    __slots__ = ("session_token", "folder_id", "include_deleted", "path")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FOLDER_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DELETED_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    folder_id: str
    include_deleted: bool
    path: str
    def __init__(self, session_token: _Optional[str] = ..., folder_id: _Optional[str] = ..., include_deleted: _Optional[bool] = ..., path: _Optional[str] = ...) -> None: ...

class ListFilesResponse(_message.Message):
    __slots__ = ("success", "files", "folders", "message", "folder")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    FOLDERS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FOLDER_FIELD_NUMBER: _ClassVar[int]
    success: bool
    files: _containers.RepeatedCompositeFieldContainer[FileEntry]
    folders: _containers.RepeatedCompositeFieldContainer[FolderEntry]
    message: str
    folder: FolderEntry
    def __init__(self, success: _Optional[bool] = ..., files: _Optional[_Iterable[_Union[FileEntry, _Mapping]]] = ..., folders: _Optional[_Iterable[_Union[FolderEntry, _Mapping]]] = ..., message: _Optional[str] = ..., folder: _Optional[_Union[FolderEntry, _Mapping]] = ...) -> None: ...

class FileEntry(_message.Message):
    __slots__ = ("file_id", "filename", "file_size", "mime_type", "created_at", "modified_at", "is_deleted", "parent_folder_id", "owner_email", "permission", "mode", "uid", "gid", "atime_ns", "mtime_ns", "ctime_ns", "symlink_target", "version", "deleted_at", "original_path", "path", "rdev", "nlink")
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    FILE_SIZE_FIELD_NUMBER: _ClassVar[int]
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    MODIFIED_AT_FIELD_NUMBER: _ClassVar[int]
    IS_DELETED_FIELD_NUMBER: _ClassVar[int]
    PARENT_FOLDER_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_EMAIL_FIELD_NUMBER: _ClassVar[int]
    PERMISSION_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    ATIME_NS_FIELD_NUMBER: _ClassVar[int]
    MTIME_NS_FIELD_NUMBER: _ClassVar[int]
    CTIME_NS_FIELD_NUMBER: _ClassVar[int]
    SYMLINK_TARGET_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DELETED_AT_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_PATH_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    RDEV_FIELD_NUMBER: _ClassVar[int]
    NLINK_FIELD_NUMBER: _ClassVar[int]
    file_id: str
    filename: str
    file_size: int
    mime_type: str
    created_at: str
    modified_at: str
    is_deleted: bool
    parent_folder_id: str
    owner_email: str
    permission: str
    mode: int
    uid: int
    gid: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int
    symlink_target: str
    version: int
    deleted_at: str
    original_path: str
    path: str
    rdev: int
    nlink: int
    def __init__(self, file_id: _Optional[str] = ..., filename: _Optional[str] = ..., file_size: _Optional[int] = ..., mime_type: _Optional[str] = ..., created_at: _Optional[str] = ..., modified_at: _Optional[str] = ..., is_deleted: _Optional[bool] = ..., parent_folder_id: _Optional[str] = ..., owner_email: _Optional[str] = ..., permission: _Optional[str] = ..., mode: _Optional[int] = ..., uid: _Optional[int] = ..., gid: _Optional[int] = ..., atime_ns: _Optional[int] = ..., mtime_ns: _Optional[int] = ..., ctime_ns: _Optional[int] = ..., symlink_target: _Optional[str] = ..., version: _Optional[int] = ..., deleted_at: _Optional[str] = ..., original_path: _Optional[str] = ..., path: _Optional[str] = ..., rdev: _Optional[int] = ..., nlink: _Optional[int] = ...) -> None: ...

class FolderEntry(_message.Message):
    __slots__ = ("folder_id", "name", "parent_folder_id", "created_at", "is_deleted", "mode", "uid", "gid", "atime_ns", "mtime_ns", "ctime_ns", "path", "owner_email", "permission", "subfolders")
    FOLDER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARENT_FOLDER_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    IS_DELETED_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    ATIME_NS_FIELD_NUMBER: _ClassVar[int]
    MTIME_NS_FIELD_NUMBER: _ClassVar[int]
    CTIME_NS_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    OWNER_EMAIL_FIELD_NUMBER: _ClassVar[int]
    PERMISSION_FIELD_NUMBER: _ClassVar[int]
    SUBFOLDERS_FIELD_NUMBER: _ClassVar[int]
    folder_id: str
    name: str
    parent_folder_id: str
    created_at: str
    is_deleted: bool
    mode: int
    uid: int
    gid: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int
    path: str
    owner_email: str
    permission: str
    subfolders: int
    def __init__(self, folder_id: _Optional[str] = ..., name: _Optional[str] = ..., parent_folder_id: _Optional[str] = ..., created_at: _Optional[str] = ..., is_deleted: _Optional[bool] = ..., mode: _Optional[int] = ..., uid: _Optional[int] = ..., gid: _Optional[int] = ..., atime_ns: _Optional[int] = ..., mtime_ns: _Optional[int] = ..., ctime_ns: _Optional[int] = ..., path: _Optional[str] = ..., owner_email: _Optional[str] = ..., permission: _Optional[str] = ..., subfolders: _Optional[int] = ...) -> None: ...

class DeleteFileRequest(_message.Message):
    __slots__ = ("session_token", "file_id", "permanent", "parent_folder_id", "name")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    PERMANENT_FIELD_NUMBER: _ClassVar[int]
    PARENT_FOLDER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    file_id: str
    permanent: bool
    parent_folder_id: str
    name: str
    def __init__(self, session_token: _Optional[str] = ..., file_id: _Optional[str] = ..., permanent: _Optional[bool] = ..., parent_folder_id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class DeleteFileResponse(_message.Message):
    __slots__ = ("success", "message")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    success: bool
    message: str
    def __init__(self, success: _Optional[bool] = ..., message: _Optional[str] = ...) -> None: ...

class ShareFileRequest(_message.Message):
    __slots__ = ("session_token", "file_id", "share_with_email", "permission")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    SHARE_WITH_EMAIL_FIELD_NUMBER: _ClassVar[int]
    PERMISSION_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    file_id: str
    share_with_email: str
    permission: str
    def __init__(self, session_token: _Optional[str] = ..., file_id: _Optional[str] = ..., share_with_email: _Optional[str] = ..., permission: _Optional[str] = ...) -> None: ...

class ShareFileResponse(_message.Message):
    __slots__ = ("success", "message", "share_token")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SHARE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    success: bool
    message: str
    share_token: str
    def __init__(self, success: _Optional[bool] = ..., message: _Optional[str] = ..., share_token: _Optional[str] = ...) -> None: ...

class EntryResponse(_message.Message):
    __slots__ = ("success", "message", "file", "folder")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    FOLDER_FIELD_NUMBER: _ClassVar[int]
    success: bool
    message: str
    file: FileEntry
    folder: FolderEntry
    def __init__(self, success: _Optional[bool] = ..., message: _Optional[str] = ..., file: _Optional[_Union[FileEntry, _Mapping]] = ..., folder: _Optional[_Union[FolderEntry, _Mapping]] = ...) -> None: ...

class CreateFolderRequest(_message.Message):
    __slots__ = ("session_token", "name", "parent_folder_id", "mode", "uid", "gid", "exist_ok", "folder_id")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARENT_FOLDER_ID_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    EXIST_OK_FIELD_NUMBER: _ClassVar[int]
    FOLDER_ID_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    name: str
    parent_folder_id: str
    mode: int
    uid: int
    gid: int
    exist_ok: bool
    folder_id: str
    def __init__(self, session_token: _Optional[str] = ..., name: _Optional[str] = ..., parent_folder_id: _Optional[str] = ..., mode: _Optional[int] = ..., uid: _Optional[int] = ..., gid: _Optional[int] = ..., exist_ok: _Optional[bool] = ..., folder_id: _Optional[str] = ...) -> None: ...

class DeleteFolderRequest(_message.Message):
    __slots__ = ("session_token", "folder_id", "recursive", "permanent")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FOLDER_ID_FIELD_NUMBER: _ClassVar[int]
    RECURSIVE_FIELD_NUMBER: _ClassVar[int]
    PERMANENT_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    folder_id: str
    recursive: bool
    permanent: bool
    def __init__(self, session_token: _Optional[str] = ..., folder_id: _Optional[str] = ..., recursive: _Optional[bool] = ..., permanent: _Optional[bool] = ...) -> None: ...

class MoveEntryRequest(_message.Message):
    __slots__ = ("session_token", "entry_id", "new_parent_folder_id", "new_name", "replace_existing", "old_parent_folder_id", "old_name")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    NEW_PARENT_FOLDER_ID_FIELD_NUMBER: _ClassVar[int]
    NEW_NAME_FIELD_NUMBER: _ClassVar[int]
    REPLACE_EXISTING_FIELD_NUMBER: _ClassVar[int]
    OLD_PARENT_FOLDER_ID_FIELD_NUMBER: _ClassVar[int]
    OLD_NAME_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    entry_id: str
    new_parent_folder_id: str
    new_name: str
    replace_existing: bool
    old_parent_folder_id: str
    old_name: str
    def __init__(self, session_token: _Optional[str] = ..., entry_id: _Optional[str] = ..., new_parent_folder_id: _Optional[str] = ..., new_name: _Optional[str] = ..., replace_existing: _Optional[bool] = ..., old_parent_folder_id: _Optional[str] = ..., old_name: _Optional[str] = ...) -> None: ...

class StatEntryRequest(_message.Message):
    __slots__ = ("session_token", "entry_id", "path", "parent_folder_id", "name")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    PARENT_FOLDER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    entry_id: str
    path: str
    parent_folder_id: str
    name: str
    def __init__(self, session_token: _Optional[str] = ..., entry_id: _Optional[str] = ..., path: _Optional[str] = ..., parent_folder_id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class SetAttributesRequest(_message.Message):
    __slots__ = ("session_token", "entry_id", "mode", "uid", "gid", "atime_ns", "mtime_ns", "size")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    ATIME_NS_FIELD_NUMBER: _ClassVar[int]
    MTIME_NS_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    entry_id: str
    mode: int
    uid: int
    gid: int
    atime_ns: int
    mtime_ns: int
    size: int
    def __init__(self, session_token: _Optional[str] = ..., entry_id: _Optional[str] = ..., mode: _Optional[int] = ..., uid: _Optional[int] = ..., gid: _Optional[int] = ..., atime_ns: _Optional[int] = ..., mtime_ns: _Optional[int] = ..., size: _Optional[int] = ...) -> None: ...

class CreateSymlinkRequest(_message.Message):
    __slots__ = ("session_token", "parent_folder_id", "name", "target", "uid", "gid")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PARENT_FOLDER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    parent_folder_id: str
    name: str
    target: str
    uid: int
    gid: int
    def __init__(self, session_token: _Optional[str] = ..., parent_folder_id: _Optional[str] = ..., name: _Optional[str] = ..., target: _Optional[str] = ..., uid: _Optional[int] = ..., gid: _Optional[int] = ...) -> None: ...

class RestoreFileRequest(_message.Message):
    __slots__ = ("session_token", "file_id", "new_parent_folder_id", "new_name")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    NEW_PARENT_FOLDER_ID_FIELD_NUMBER: _ClassVar[int]
    NEW_NAME_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    file_id: str
    new_parent_folder_id: str
    new_name: str
    def __init__(self, session_token: _Optional[str] = ..., file_id: _Optional[str] = ..., new_parent_folder_id: _Optional[str] = ..., new_name: _Optional[str] = ...) -> None: ...

class ListTrashRequest(_message.Message):
    __slots__ = ("session_token",)
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    def __init__(self, session_token: _Optional[str] = ...) -> None: ...

class EmptyTrashRequest(_message.Message):
    __slots__ = ("session_token", "entry_ids")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ENTRY_IDS_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    entry_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, session_token: _Optional[str] = ..., entry_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class EmptyTrashResponse(_message.Message):
    __slots__ = ("success", "message", "files_removed", "bytes_freed")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FILES_REMOVED_FIELD_NUMBER: _ClassVar[int]
    BYTES_FREED_FIELD_NUMBER: _ClassVar[int]
    success: bool
    message: str
    files_removed: int
    bytes_freed: int
    def __init__(self, success: _Optional[bool] = ..., message: _Optional[str] = ..., files_removed: _Optional[int] = ..., bytes_freed: _Optional[int] = ...) -> None: ...

class ShareEntry(_message.Message):
    __slots__ = ("share_id", "file_id", "filename", "owner_email", "shared_with_email", "permission", "created_at", "share_token")
    SHARE_ID_FIELD_NUMBER: _ClassVar[int]
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    OWNER_EMAIL_FIELD_NUMBER: _ClassVar[int]
    SHARED_WITH_EMAIL_FIELD_NUMBER: _ClassVar[int]
    PERMISSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    SHARE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    share_id: str
    file_id: str
    filename: str
    owner_email: str
    shared_with_email: str
    permission: str
    created_at: str
    share_token: str
    def __init__(self, share_id: _Optional[str] = ..., file_id: _Optional[str] = ..., filename: _Optional[str] = ..., owner_email: _Optional[str] = ..., shared_with_email: _Optional[str] = ..., permission: _Optional[str] = ..., created_at: _Optional[str] = ..., share_token: _Optional[str] = ...) -> None: ...

class ListSharesRequest(_message.Message):
    __slots__ = ("session_token", "file_id")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    file_id: str
    def __init__(self, session_token: _Optional[str] = ..., file_id: _Optional[str] = ...) -> None: ...

class ListSharesResponse(_message.Message):
    __slots__ = ("success", "shares")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    SHARES_FIELD_NUMBER: _ClassVar[int]
    success: bool
    shares: _containers.RepeatedCompositeFieldContainer[ShareEntry]
    def __init__(self, success: _Optional[bool] = ..., shares: _Optional[_Iterable[_Union[ShareEntry, _Mapping]]] = ...) -> None: ...

class RevokeShareRequest(_message.Message):
    __slots__ = ("session_token", "share_id", "file_id", "shared_with_email")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SHARE_ID_FIELD_NUMBER: _ClassVar[int]
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    SHARED_WITH_EMAIL_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    share_id: str
    file_id: str
    shared_with_email: str
    def __init__(self, session_token: _Optional[str] = ..., share_id: _Optional[str] = ..., file_id: _Optional[str] = ..., shared_with_email: _Optional[str] = ...) -> None: ...

class RevokeShareResponse(_message.Message):
    __slots__ = ("success", "message")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    success: bool
    message: str
    def __init__(self, success: _Optional[bool] = ..., message: _Optional[str] = ...) -> None: ...

class ListSharedWithMeRequest(_message.Message):
    __slots__ = ("session_token",)
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    def __init__(self, session_token: _Optional[str] = ...) -> None: ...

class FindChunksRequest(_message.Message):
    __slots__ = ("session_token", "sha256")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    sha256: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, session_token: _Optional[str] = ..., sha256: _Optional[_Iterable[str]] = ...) -> None: ...

class FindChunksResponse(_message.Message):
    __slots__ = ("present", "chunk_size")
    PRESENT_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    present: _containers.RepeatedScalarFieldContainer[str]
    chunk_size: int
    def __init__(self, present: _Optional[_Iterable[str]] = ..., chunk_size: _Optional[int] = ...) -> None: ...

class PrepareChunkWritesRequest(_message.Message):
    __slots__ = ("session_token", "chunks", "upload_id")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    chunks: _containers.RepeatedCompositeFieldContainer[ChunkRef]
    upload_id: str
    def __init__(self, session_token: _Optional[str] = ..., chunks: _Optional[_Iterable[_Union[ChunkRef, _Mapping]]] = ..., upload_id: _Optional[str] = ...) -> None: ...

class ChunkWriteTarget(_message.Message):
    __slots__ = ("node_id", "address", "write_token")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    WRITE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    address: str
    write_token: str
    def __init__(self, node_id: _Optional[str] = ..., address: _Optional[str] = ..., write_token: _Optional[str] = ...) -> None: ...

class ChunkWriteGrant(_message.Message):
    __slots__ = ("sha256", "size", "already_held", "targets")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    ALREADY_HELD_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    size: int
    already_held: bool
    targets: _containers.RepeatedCompositeFieldContainer[ChunkWriteTarget]
    def __init__(self, sha256: _Optional[str] = ..., size: _Optional[int] = ..., already_held: _Optional[bool] = ..., targets: _Optional[_Iterable[_Union[ChunkWriteTarget, _Mapping]]] = ...) -> None: ...

class PrepareChunkWritesResponse(_message.Message):
    __slots__ = ("grants", "expires_at", "node_ca_pem")
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    NODE_CA_PEM_FIELD_NUMBER: _ClassVar[int]
    grants: _containers.RepeatedCompositeFieldContainer[ChunkWriteGrant]
    expires_at: int
    node_ca_pem: bytes
    def __init__(self, grants: _Optional[_Iterable[_Union[ChunkWriteGrant, _Mapping]]] = ..., expires_at: _Optional[int] = ..., node_ca_pem: _Optional[bytes] = ...) -> None: ...

class GetFileChunksRequest(_message.Message):
    __slots__ = ("session_token", "file_id", "with_sources")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    WITH_SOURCES_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    file_id: str
    with_sources: bool
    def __init__(self, session_token: _Optional[str] = ..., file_id: _Optional[str] = ..., with_sources: _Optional[bool] = ...) -> None: ...

class GetFileChunksResponse(_message.Message):
    __slots__ = ("chunks", "chunk_size", "version", "sources", "sources_expire_at", "node_ca_pem")
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    SOURCES_EXPIRE_AT_FIELD_NUMBER: _ClassVar[int]
    NODE_CA_PEM_FIELD_NUMBER: _ClassVar[int]
    chunks: _containers.RepeatedCompositeFieldContainer[ChunkRef]
    chunk_size: int
    version: int
    sources: _containers.RepeatedCompositeFieldContainer[ChunkSource]
    sources_expire_at: int
    node_ca_pem: bytes
    def __init__(self, chunks: _Optional[_Iterable[_Union[ChunkRef, _Mapping]]] = ..., chunk_size: _Optional[int] = ..., version: _Optional[int] = ..., sources: _Optional[_Iterable[_Union[ChunkSource, _Mapping]]] = ..., sources_expire_at: _Optional[int] = ..., node_ca_pem: _Optional[bytes] = ...) -> None: ...

class ChunkSource(_message.Message):
    __slots__ = ("sha256", "addresses", "read_token")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    READ_TOKEN_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    addresses: _containers.RepeatedScalarFieldContainer[str]
    read_token: str
    def __init__(self, sha256: _Optional[str] = ..., addresses: _Optional[_Iterable[str]] = ..., read_token: _Optional[str] = ...) -> None: ...

class WatchChangesRequest(_message.Message):
    __slots__ = ("session_token",)
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    def __init__(self, session_token: _Optional[str] = ...) -> None: ...

class ChangeEvent(_message.Message):
    __slots__ = ("kind", "entry_id", "parent_folder_id", "old_parent_folder_id", "name", "old_name", "is_folder", "timestamp", "echo_free", "client_folder_ids")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_FOLDER_ID_FIELD_NUMBER: _ClassVar[int]
    OLD_PARENT_FOLDER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    OLD_NAME_FIELD_NUMBER: _ClassVar[int]
    IS_FOLDER_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    ECHO_FREE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FOLDER_IDS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    entry_id: str
    parent_folder_id: str
    old_parent_folder_id: str
    name: str
    old_name: str
    is_folder: bool
    timestamp: str
    echo_free: bool
    client_folder_ids: bool
    def __init__(self, kind: _Optional[str] = ..., entry_id: _Optional[str] = ..., parent_folder_id: _Optional[str] = ..., old_parent_folder_id: _Optional[str] = ..., name: _Optional[str] = ..., old_name: _Optional[str] = ..., is_folder: _Optional[bool] = ..., timestamp: _Optional[str] = ..., echo_free: _Optional[bool] = ..., client_folder_ids: _Optional[bool] = ...) -> None: ...

class DeleteFilesRequest(_message.Message):
    __slots__ = ("session_token", "file_ids", "permanent")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILE_IDS_FIELD_NUMBER: _ClassVar[int]
    PERMANENT_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    file_ids: _containers.RepeatedScalarFieldContainer[str]
    permanent: bool
    def __init__(self, session_token: _Optional[str] = ..., file_ids: _Optional[_Iterable[str]] = ..., permanent: _Optional[bool] = ...) -> None: ...

class DeleteFileResult(_message.Message):
    __slots__ = ("file_id", "success", "error_code", "error_message")
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    file_id: str
    success: bool
    error_code: str
    error_message: str
    def __init__(self, file_id: _Optional[str] = ..., success: _Optional[bool] = ..., error_code: _Optional[str] = ..., error_message: _Optional[str] = ...) -> None: ...

class DeleteFilesResponse(_message.Message):
    __slots__ = ("results", "deleted")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[DeleteFileResult]
    deleted: int
    def __init__(self, results: _Optional[_Iterable[_Union[DeleteFileResult, _Mapping]]] = ..., deleted: _Optional[int] = ...) -> None: ...

class StorageInfoRequest(_message.Message):
    __slots__ = ("session_token",)
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    def __init__(self, session_token: _Optional[str] = ...) -> None: ...

class StorageInfoResponse(_message.Message):
    __slots__ = ("success", "allocated_bytes", "used_bytes", "available_bytes", "usage_percentage", "chunk_size", "file_count", "trash_bytes")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_BYTES_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_BYTES_FIELD_NUMBER: _ClassVar[int]
    USAGE_PERCENTAGE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    FILE_COUNT_FIELD_NUMBER: _ClassVar[int]
    TRASH_BYTES_FIELD_NUMBER: _ClassVar[int]
    success: bool
    allocated_bytes: int
    used_bytes: int
    available_bytes: int
    usage_percentage: float
    chunk_size: int
    file_count: int
    trash_bytes: int
    def __init__(self, success: _Optional[bool] = ..., allocated_bytes: _Optional[int] = ..., used_bytes: _Optional[int] = ..., available_bytes: _Optional[int] = ..., usage_percentage: _Optional[float] = ..., chunk_size: _Optional[int] = ..., file_count: _Optional[int] = ..., trash_bytes: _Optional[int] = ...) -> None: ...

class GetStorageTiersRequest(_message.Message):
    __slots__ = ("session_token",)
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    def __init__(self, session_token: _Optional[str] = ...) -> None: ...

class GetStorageTiersResponse(_message.Message):
    __slots__ = ("success", "tiers", "demo_mode")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    TIERS_FIELD_NUMBER: _ClassVar[int]
    DEMO_MODE_FIELD_NUMBER: _ClassVar[int]
    success: bool
    tiers: _containers.RepeatedCompositeFieldContainer[StorageTier]
    demo_mode: bool
    def __init__(self, success: _Optional[bool] = ..., tiers: _Optional[_Iterable[_Union[StorageTier, _Mapping]]] = ..., demo_mode: _Optional[bool] = ...) -> None: ...

class StorageTier(_message.Message):
    __slots__ = ("tier_id", "name", "display_name", "storage_bytes", "price_xaf", "description", "active")
    TIER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    STORAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    PRICE_XAF_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    tier_id: str
    name: str
    display_name: str
    storage_bytes: int
    price_xaf: int
    description: str
    active: bool
    def __init__(self, tier_id: _Optional[str] = ..., name: _Optional[str] = ..., display_name: _Optional[str] = ..., storage_bytes: _Optional[int] = ..., price_xaf: _Optional[int] = ..., description: _Optional[str] = ..., active: _Optional[bool] = ...) -> None: ...

class InitiatePaymentRequest(_message.Message):
    __slots__ = ("session_token", "tier_id", "provider", "phone_number")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TIER_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    PHONE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    tier_id: str
    provider: str
    phone_number: str
    def __init__(self, session_token: _Optional[str] = ..., tier_id: _Optional[str] = ..., provider: _Optional[str] = ..., phone_number: _Optional[str] = ...) -> None: ...

class InitiatePaymentResponse(_message.Message):
    __slots__ = ("success", "message", "payment_id", "transaction_ref", "amount_xaf", "ussd_code", "demo_mode")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_REF_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_XAF_FIELD_NUMBER: _ClassVar[int]
    USSD_CODE_FIELD_NUMBER: _ClassVar[int]
    DEMO_MODE_FIELD_NUMBER: _ClassVar[int]
    success: bool
    message: str
    payment_id: str
    transaction_ref: str
    amount_xaf: int
    ussd_code: str
    demo_mode: bool
    def __init__(self, success: _Optional[bool] = ..., message: _Optional[str] = ..., payment_id: _Optional[str] = ..., transaction_ref: _Optional[str] = ..., amount_xaf: _Optional[int] = ..., ussd_code: _Optional[str] = ..., demo_mode: _Optional[bool] = ...) -> None: ...

class CheckPaymentStatusRequest(_message.Message):
    __slots__ = ("session_token", "payment_id")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    payment_id: str
    def __init__(self, session_token: _Optional[str] = ..., payment_id: _Optional[str] = ...) -> None: ...

class CheckPaymentStatusResponse(_message.Message):
    __slots__ = ("success", "payment_id", "status", "message", "storage_added")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STORAGE_ADDED_FIELD_NUMBER: _ClassVar[int]
    success: bool
    payment_id: str
    status: str
    message: str
    storage_added: int
    def __init__(self, success: _Optional[bool] = ..., payment_id: _Optional[str] = ..., status: _Optional[str] = ..., message: _Optional[str] = ..., storage_added: _Optional[int] = ...) -> None: ...

class GetPaymentHistoryRequest(_message.Message):
    __slots__ = ("session_token", "limit")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    limit: int
    def __init__(self, session_token: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class GetPaymentHistoryResponse(_message.Message):
    __slots__ = ("success", "payments")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    PAYMENTS_FIELD_NUMBER: _ClassVar[int]
    success: bool
    payments: _containers.RepeatedCompositeFieldContainer[PaymentRecord]
    def __init__(self, success: _Optional[bool] = ..., payments: _Optional[_Iterable[_Union[PaymentRecord, _Mapping]]] = ...) -> None: ...

class PaymentRecord(_message.Message):
    __slots__ = ("payment_id", "tier_id", "tier_name", "provider", "phone_number", "amount_xaf", "status", "transaction_ref", "storage_bytes", "created_at", "completed_at", "operator")
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    TIER_ID_FIELD_NUMBER: _ClassVar[int]
    TIER_NAME_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    PHONE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_XAF_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_REF_FIELD_NUMBER: _ClassVar[int]
    STORAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    payment_id: str
    tier_id: str
    tier_name: str
    provider: str
    phone_number: str
    amount_xaf: int
    status: str
    transaction_ref: str
    storage_bytes: int
    created_at: str
    completed_at: str
    operator: str
    def __init__(self, payment_id: _Optional[str] = ..., tier_id: _Optional[str] = ..., tier_name: _Optional[str] = ..., provider: _Optional[str] = ..., phone_number: _Optional[str] = ..., amount_xaf: _Optional[int] = ..., status: _Optional[str] = ..., transaction_ref: _Optional[str] = ..., storage_bytes: _Optional[int] = ..., created_at: _Optional[str] = ..., completed_at: _Optional[str] = ..., operator: _Optional[str] = ...) -> None: ...

class FsckRequest(_message.Message):
    __slots__ = ("admin_key", "repair", "presence_only")
    ADMIN_KEY_FIELD_NUMBER: _ClassVar[int]
    REPAIR_FIELD_NUMBER: _ClassVar[int]
    PRESENCE_ONLY_FIELD_NUMBER: _ClassVar[int]
    admin_key: str
    repair: bool
    presence_only: bool
    def __init__(self, admin_key: _Optional[str] = ..., repair: _Optional[bool] = ..., presence_only: _Optional[bool] = ...) -> None: ...

class FsckFinding(_message.Message):
    __slots__ = ("kind", "chunk_sha256", "node_name", "path", "owner_email", "action", "detail", "file_id")
    KIND_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SHA256_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    OWNER_EMAIL_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    kind: str
    chunk_sha256: str
    node_name: str
    path: str
    owner_email: str
    action: str
    detail: str
    file_id: str
    def __init__(self, kind: _Optional[str] = ..., chunk_sha256: _Optional[str] = ..., node_name: _Optional[str] = ..., path: _Optional[str] = ..., owner_email: _Optional[str] = ..., action: _Optional[str] = ..., detail: _Optional[str] = ..., file_id: _Optional[str] = ...) -> None: ...

class FsckSummary(_message.Message):
    __slots__ = ("files_checked", "chunks_checked", "nodes_checked", "nodes_unreachable", "missing_copies", "corrupt_copies", "unknown_chunks", "under_replicated", "lost_files", "repaired", "unrepaired", "elapsed_s", "clean", "complete", "unknown_in_grace", "verified_copies", "problems_remaining", "content_verified")
    FILES_CHECKED_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_CHECKED_FIELD_NUMBER: _ClassVar[int]
    NODES_CHECKED_FIELD_NUMBER: _ClassVar[int]
    NODES_UNREACHABLE_FIELD_NUMBER: _ClassVar[int]
    MISSING_COPIES_FIELD_NUMBER: _ClassVar[int]
    CORRUPT_COPIES_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    UNDER_REPLICATED_FIELD_NUMBER: _ClassVar[int]
    LOST_FILES_FIELD_NUMBER: _ClassVar[int]
    REPAIRED_FIELD_NUMBER: _ClassVar[int]
    UNREPAIRED_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_S_FIELD_NUMBER: _ClassVar[int]
    CLEAN_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_IN_GRACE_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_COPIES_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_REMAINING_FIELD_NUMBER: _ClassVar[int]
    CONTENT_VERIFIED_FIELD_NUMBER: _ClassVar[int]
    files_checked: int
    chunks_checked: int
    nodes_checked: int
    nodes_unreachable: int
    missing_copies: int
    corrupt_copies: int
    unknown_chunks: int
    under_replicated: int
    lost_files: int
    repaired: int
    unrepaired: int
    elapsed_s: float
    clean: bool
    complete: bool
    unknown_in_grace: int
    verified_copies: int
    problems_remaining: int
    content_verified: bool
    def __init__(self, files_checked: _Optional[int] = ..., chunks_checked: _Optional[int] = ..., nodes_checked: _Optional[int] = ..., nodes_unreachable: _Optional[int] = ..., missing_copies: _Optional[int] = ..., corrupt_copies: _Optional[int] = ..., unknown_chunks: _Optional[int] = ..., under_replicated: _Optional[int] = ..., lost_files: _Optional[int] = ..., repaired: _Optional[int] = ..., unrepaired: _Optional[int] = ..., elapsed_s: _Optional[float] = ..., clean: _Optional[bool] = ..., complete: _Optional[bool] = ..., unknown_in_grace: _Optional[int] = ..., verified_copies: _Optional[int] = ..., problems_remaining: _Optional[int] = ..., content_verified: _Optional[bool] = ...) -> None: ...

class FsckMessage(_message.Message):
    __slots__ = ("finding", "summary", "progress")
    FINDING_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    finding: FsckFinding
    summary: FsckSummary
    progress: str
    def __init__(self, finding: _Optional[_Union[FsckFinding, _Mapping]] = ..., summary: _Optional[_Union[FsckSummary, _Mapping]] = ..., progress: _Optional[str] = ...) -> None: ...

class BackupRequest(_message.Message):
    __slots__ = ("admin_key",)
    ADMIN_KEY_FIELD_NUMBER: _ClassVar[int]
    admin_key: str
    def __init__(self, admin_key: _Optional[str] = ...) -> None: ...

class BackupPiece(_message.Message):
    __slots__ = ("data", "format", "total_bytes", "sha256", "tables", "rows", "revision", "created_at")
    DATA_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    TABLES_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    format: str
    total_bytes: int
    sha256: str
    tables: int
    rows: int
    revision: str
    created_at: str
    def __init__(self, data: _Optional[bytes] = ..., format: _Optional[str] = ..., total_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., tables: _Optional[int] = ..., rows: _Optional[int] = ..., revision: _Optional[str] = ..., created_at: _Optional[str] = ...) -> None: ...

class SystemStatusRequest(_message.Message):
    __slots__ = ("admin_key",)
    ADMIN_KEY_FIELD_NUMBER: _ClassVar[int]
    admin_key: str
    def __init__(self, admin_key: _Optional[str] = ...) -> None: ...

class SystemStatusResponse(_message.Message):
    __slots__ = ("success", "global_capacity_bytes", "global_allocated_bytes", "global_used_bytes", "total_users", "total_nodes", "online_nodes", "total_files", "total_chunks", "system_health", "under_replicated_chunks", "replication_factor", "node_used_bytes", "security_warnings", "chunks_short_no_room", "chunks_short_too_few_nodes", "garbage_chunks", "upload_bytes_per_s", "download_bytes_per_s", "speed_window_s", "active_sessions", "payment_success_rate", "payment_window_s", "stored_bytes", "logical_bytes")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_ALLOCATED_BYTES_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_USERS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_NODES_FIELD_NUMBER: _ClassVar[int]
    ONLINE_NODES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FILES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_HEALTH_FIELD_NUMBER: _ClassVar[int]
    UNDER_REPLICATED_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    REPLICATION_FACTOR_FIELD_NUMBER: _ClassVar[int]
    NODE_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    SECURITY_WARNINGS_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_SHORT_NO_ROOM_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_SHORT_TOO_FEW_NODES_FIELD_NUMBER: _ClassVar[int]
    GARBAGE_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_BYTES_PER_S_FIELD_NUMBER: _ClassVar[int]
    DOWNLOAD_BYTES_PER_S_FIELD_NUMBER: _ClassVar[int]
    SPEED_WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_SUCCESS_RATE_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    STORED_BYTES_FIELD_NUMBER: _ClassVar[int]
    LOGICAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    success: bool
    global_capacity_bytes: int
    global_allocated_bytes: int
    global_used_bytes: int
    total_users: int
    total_nodes: int
    online_nodes: int
    total_files: int
    total_chunks: int
    system_health: float
    under_replicated_chunks: int
    replication_factor: int
    node_used_bytes: int
    security_warnings: _containers.RepeatedScalarFieldContainer[str]
    chunks_short_no_room: int
    chunks_short_too_few_nodes: int
    garbage_chunks: int
    upload_bytes_per_s: float
    download_bytes_per_s: float
    speed_window_s: int
    active_sessions: int
    payment_success_rate: float
    payment_window_s: int
    stored_bytes: int
    logical_bytes: int
    def __init__(self, success: _Optional[bool] = ..., global_capacity_bytes: _Optional[int] = ..., global_allocated_bytes: _Optional[int] = ..., global_used_bytes: _Optional[int] = ..., total_users: _Optional[int] = ..., total_nodes: _Optional[int] = ..., online_nodes: _Optional[int] = ..., total_files: _Optional[int] = ..., total_chunks: _Optional[int] = ..., system_health: _Optional[float] = ..., under_replicated_chunks: _Optional[int] = ..., replication_factor: _Optional[int] = ..., node_used_bytes: _Optional[int] = ..., security_warnings: _Optional[_Iterable[str]] = ..., chunks_short_no_room: _Optional[int] = ..., chunks_short_too_few_nodes: _Optional[int] = ..., garbage_chunks: _Optional[int] = ..., upload_bytes_per_s: _Optional[float] = ..., download_bytes_per_s: _Optional[float] = ..., speed_window_s: _Optional[int] = ..., active_sessions: _Optional[int] = ..., payment_success_rate: _Optional[float] = ..., payment_window_s: _Optional[int] = ..., stored_bytes: _Optional[int] = ..., logical_bytes: _Optional[int] = ...) -> None: ...

class ListUsersRequest(_message.Message):
    __slots__ = ("admin_key",)
    ADMIN_KEY_FIELD_NUMBER: _ClassVar[int]
    admin_key: str
    def __init__(self, admin_key: _Optional[str] = ...) -> None: ...

class ListUsersResponse(_message.Message):
    __slots__ = ("success", "users")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    success: bool
    users: _containers.RepeatedCompositeFieldContainer[UserInfo]
    def __init__(self, success: _Optional[bool] = ..., users: _Optional[_Iterable[_Union[UserInfo, _Mapping]]] = ...) -> None: ...

class UserInfo(_message.Message):
    __slots__ = ("user_id", "email", "full_name", "storage_allocated", "storage_used", "created_at", "last_login", "file_count", "is_active")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    FULL_NAME_FIELD_NUMBER: _ClassVar[int]
    STORAGE_ALLOCATED_FIELD_NUMBER: _ClassVar[int]
    STORAGE_USED_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_LOGIN_FIELD_NUMBER: _ClassVar[int]
    FILE_COUNT_FIELD_NUMBER: _ClassVar[int]
    IS_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    email: str
    full_name: str
    storage_allocated: int
    storage_used: int
    created_at: str
    last_login: str
    file_count: int
    is_active: bool
    def __init__(self, user_id: _Optional[str] = ..., email: _Optional[str] = ..., full_name: _Optional[str] = ..., storage_allocated: _Optional[int] = ..., storage_used: _Optional[int] = ..., created_at: _Optional[str] = ..., last_login: _Optional[str] = ..., file_count: _Optional[int] = ..., is_active: _Optional[bool] = ...) -> None: ...

class StreamEventsRequest(_message.Message):
    __slots__ = ("admin_key", "history", "event_types")
    ADMIN_KEY_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    admin_key: str
    history: int
    event_types: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, admin_key: _Optional[str] = ..., history: _Optional[int] = ..., event_types: _Optional[_Iterable[str]] = ...) -> None: ...

class SystemEvent(_message.Message):
    __slots__ = ("event_type", "timestamp", "message", "user_id", "details", "event_id")
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    event_type: str
    timestamp: str
    message: str
    user_id: str
    details: str
    event_id: int
    def __init__(self, event_type: _Optional[str] = ..., timestamp: _Optional[str] = ..., message: _Optional[str] = ..., user_id: _Optional[str] = ..., details: _Optional[str] = ..., event_id: _Optional[int] = ...) -> None: ...

class ListNodesRequest(_message.Message):
    __slots__ = ("admin_key",)
    ADMIN_KEY_FIELD_NUMBER: _ClassVar[int]
    admin_key: str
    def __init__(self, admin_key: _Optional[str] = ...) -> None: ...

class NodeInfo(_message.Message):
    __slots__ = ("node_id", "name", "host", "port", "capacity_bytes", "used_bytes", "online", "last_heartbeat", "chunk_count", "health_score", "status", "registered_at", "logical_bytes")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    HEALTH_SCORE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AT_FIELD_NUMBER: _ClassVar[int]
    LOGICAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    name: str
    host: str
    port: int
    capacity_bytes: int
    used_bytes: int
    online: bool
    last_heartbeat: str
    chunk_count: int
    health_score: float
    status: str
    registered_at: str
    logical_bytes: int
    def __init__(self, node_id: _Optional[str] = ..., name: _Optional[str] = ..., host: _Optional[str] = ..., port: _Optional[int] = ..., capacity_bytes: _Optional[int] = ..., used_bytes: _Optional[int] = ..., online: _Optional[bool] = ..., last_heartbeat: _Optional[str] = ..., chunk_count: _Optional[int] = ..., health_score: _Optional[float] = ..., status: _Optional[str] = ..., registered_at: _Optional[str] = ..., logical_bytes: _Optional[int] = ...) -> None: ...

class ListNodesResponse(_message.Message):
    __slots__ = ("success", "nodes")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    success: bool
    nodes: _containers.RepeatedCompositeFieldContainer[NodeInfo]
    def __init__(self, success: _Optional[bool] = ..., nodes: _Optional[_Iterable[_Union[NodeInfo, _Mapping]]] = ...) -> None: ...

class GetUserDetailsRequest(_message.Message):
    __slots__ = ("admin_key", "email")
    ADMIN_KEY_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    admin_key: str
    email: str
    def __init__(self, admin_key: _Optional[str] = ..., email: _Optional[str] = ...) -> None: ...

class GetUserDetailsResponse(_message.Message):
    __slots__ = ("success", "user", "active_sessions", "payments", "trash_bytes", "folder_count", "message")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    PAYMENTS_FIELD_NUMBER: _ClassVar[int]
    TRASH_BYTES_FIELD_NUMBER: _ClassVar[int]
    FOLDER_COUNT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    success: bool
    user: UserInfo
    active_sessions: int
    payments: _containers.RepeatedCompositeFieldContainer[PaymentRecord]
    trash_bytes: int
    folder_count: int
    message: str
    def __init__(self, success: _Optional[bool] = ..., user: _Optional[_Union[UserInfo, _Mapping]] = ..., active_sessions: _Optional[int] = ..., payments: _Optional[_Iterable[_Union[PaymentRecord, _Mapping]]] = ..., trash_bytes: _Optional[int] = ..., folder_count: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class SetUserQuotaRequest(_message.Message):
    __slots__ = ("admin_key", "email", "storage_bytes")
    ADMIN_KEY_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    STORAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    admin_key: str
    email: str
    storage_bytes: int
    def __init__(self, admin_key: _Optional[str] = ..., email: _Optional[str] = ..., storage_bytes: _Optional[int] = ...) -> None: ...

class SetUserQuotaResponse(_message.Message):
    __slots__ = ("success", "message", "storage_allocated")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STORAGE_ALLOCATED_FIELD_NUMBER: _ClassVar[int]
    success: bool
    message: str
    storage_allocated: int
    def __init__(self, success: _Optional[bool] = ..., message: _Optional[str] = ..., storage_allocated: _Optional[int] = ...) -> None: ...

class UpsertTierRequest(_message.Message):
    __slots__ = ("admin_key", "tier")
    ADMIN_KEY_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    admin_key: str
    tier: StorageTier
    def __init__(self, admin_key: _Optional[str] = ..., tier: _Optional[_Union[StorageTier, _Mapping]] = ...) -> None: ...

class UpsertTierResponse(_message.Message):
    __slots__ = ("success", "message", "tier")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    success: bool
    message: str
    tier: StorageTier
    def __init__(self, success: _Optional[bool] = ..., message: _Optional[str] = ..., tier: _Optional[_Union[StorageTier, _Mapping]] = ...) -> None: ...

class PaymentAnalyticsRequest(_message.Message):
    __slots__ = ("admin_key", "since", "until")
    ADMIN_KEY_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    admin_key: str
    since: int
    until: int
    def __init__(self, admin_key: _Optional[str] = ..., since: _Optional[int] = ..., until: _Optional[int] = ...) -> None: ...

class PaymentBreakdown(_message.Message):
    __slots__ = ("key", "count", "completed", "failed", "pending", "revenue_xaf", "success_rate", "storage_sold_bytes")
    KEY_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    REVENUE_XAF_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_RATE_FIELD_NUMBER: _ClassVar[int]
    STORAGE_SOLD_BYTES_FIELD_NUMBER: _ClassVar[int]
    key: str
    count: int
    completed: int
    failed: int
    pending: int
    revenue_xaf: int
    success_rate: float
    storage_sold_bytes: int
    def __init__(self, key: _Optional[str] = ..., count: _Optional[int] = ..., completed: _Optional[int] = ..., failed: _Optional[int] = ..., pending: _Optional[int] = ..., revenue_xaf: _Optional[int] = ..., success_rate: _Optional[float] = ..., storage_sold_bytes: _Optional[int] = ...) -> None: ...

class PaymentAnalyticsResponse(_message.Message):
    __slots__ = ("success", "total_payments", "completed", "failed", "pending", "revenue_xaf", "success_rate", "by_tier", "by_provider")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_PAYMENTS_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    REVENUE_XAF_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_RATE_FIELD_NUMBER: _ClassVar[int]
    BY_TIER_FIELD_NUMBER: _ClassVar[int]
    BY_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    success: bool
    total_payments: int
    completed: int
    failed: int
    pending: int
    revenue_xaf: int
    success_rate: float
    by_tier: _containers.RepeatedCompositeFieldContainer[PaymentBreakdown]
    by_provider: _containers.RepeatedCompositeFieldContainer[PaymentBreakdown]
    def __init__(self, success: _Optional[bool] = ..., total_payments: _Optional[int] = ..., completed: _Optional[int] = ..., failed: _Optional[int] = ..., pending: _Optional[int] = ..., revenue_xaf: _Optional[int] = ..., success_rate: _Optional[float] = ..., by_tier: _Optional[_Iterable[_Union[PaymentBreakdown, _Mapping]]] = ..., by_provider: _Optional[_Iterable[_Union[PaymentBreakdown, _Mapping]]] = ...) -> None: ...

class DrainNodeRequest(_message.Message):
    __slots__ = ("admin_key", "node_name")
    ADMIN_KEY_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    admin_key: str
    node_name: str
    def __init__(self, admin_key: _Optional[str] = ..., node_name: _Optional[str] = ...) -> None: ...

class DrainNodeResponse(_message.Message):
    __slots__ = ("success", "message")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    success: bool
    message: str
    def __init__(self, success: _Optional[bool] = ..., message: _Optional[str] = ...) -> None: ...

class RegisterNodeRequest(_message.Message):
    __slots__ = ("name", "host", "port", "capacity_bytes", "used_bytes", "cpu_cores", "cluster_secret", "chunk_count", "node_key")
    NAME_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    CPU_CORES_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_SECRET_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    NODE_KEY_FIELD_NUMBER: _ClassVar[int]
    name: str
    host: str
    port: int
    capacity_bytes: int
    used_bytes: int
    cpu_cores: int
    cluster_secret: str
    chunk_count: int
    node_key: str
    def __init__(self, name: _Optional[str] = ..., host: _Optional[str] = ..., port: _Optional[int] = ..., capacity_bytes: _Optional[int] = ..., used_bytes: _Optional[int] = ..., cpu_cores: _Optional[int] = ..., cluster_secret: _Optional[str] = ..., chunk_count: _Optional[int] = ..., node_key: _Optional[str] = ...) -> None: ...

class RegisterNodeResponse(_message.Message):
    __slots__ = ("success", "message", "node_id", "heartbeat_interval_s", "node_key")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    NODE_KEY_FIELD_NUMBER: _ClassVar[int]
    success: bool
    message: str
    node_id: str
    heartbeat_interval_s: int
    node_key: str
    def __init__(self, success: _Optional[bool] = ..., message: _Optional[str] = ..., node_id: _Optional[str] = ..., heartbeat_interval_s: _Optional[int] = ..., node_key: _Optional[str] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("node_id", "used_bytes", "chunk_count", "cluster_secret", "capacity_bytes", "corrupt_chunks", "node_key", "logical_bytes")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_SECRET_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    CORRUPT_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    NODE_KEY_FIELD_NUMBER: _ClassVar[int]
    LOGICAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    used_bytes: int
    chunk_count: int
    cluster_secret: str
    capacity_bytes: int
    corrupt_chunks: _containers.RepeatedScalarFieldContainer[str]
    node_key: str
    logical_bytes: int
    def __init__(self, node_id: _Optional[str] = ..., used_bytes: _Optional[int] = ..., chunk_count: _Optional[int] = ..., cluster_secret: _Optional[str] = ..., capacity_bytes: _Optional[int] = ..., corrupt_chunks: _Optional[_Iterable[str]] = ..., node_key: _Optional[str] = ..., logical_bytes: _Optional[int] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("success", "message", "reregister")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REREGISTER_FIELD_NUMBER: _ClassVar[int]
    success: bool
    message: str
    reregister: bool
    def __init__(self, success: _Optional[bool] = ..., message: _Optional[str] = ..., reregister: _Optional[bool] = ...) -> None: ...

class DeregisterNodeRequest(_message.Message):
    __slots__ = ("node_id", "cluster_secret", "node_key")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_SECRET_FIELD_NUMBER: _ClassVar[int]
    NODE_KEY_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    cluster_secret: str
    node_key: str
    def __init__(self, node_id: _Optional[str] = ..., cluster_secret: _Optional[str] = ..., node_key: _Optional[str] = ...) -> None: ...

class DeregisterNodeResponse(_message.Message):
    __slots__ = ("success", "message")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    success: bool
    message: str
    def __init__(self, success: _Optional[bool] = ..., message: _Optional[str] = ...) -> None: ...

class GetChunksRequest(_message.Message):
    __slots__ = ("sha256", "cluster_secret")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_SECRET_FIELD_NUMBER: _ClassVar[int]
    sha256: _containers.RepeatedScalarFieldContainer[str]
    cluster_secret: str
    def __init__(self, sha256: _Optional[_Iterable[str]] = ..., cluster_secret: _Optional[str] = ...) -> None: ...

class GetChunksResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[GetChunkResult]
    def __init__(self, results: _Optional[_Iterable[_Union[GetChunkResult, _Mapping]]] = ...) -> None: ...

class GetChunkResult(_message.Message):
    __slots__ = ("sha256", "data", "error_code", "message")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    data: bytes
    error_code: str
    message: str
    def __init__(self, sha256: _Optional[str] = ..., data: _Optional[bytes] = ..., error_code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class PutChunksRequest(_message.Message):
    __slots__ = ("chunks", "cluster_secret", "upload_id")
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_SECRET_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    chunks: _containers.RepeatedCompositeFieldContainer[PutChunkRequest]
    cluster_secret: str
    upload_id: str
    def __init__(self, chunks: _Optional[_Iterable[_Union[PutChunkRequest, _Mapping]]] = ..., cluster_secret: _Optional[str] = ..., upload_id: _Optional[str] = ...) -> None: ...

class PutChunksResponse(_message.Message):
    __slots__ = ("results", "used_bytes")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[PutChunkResult]
    used_bytes: int
    def __init__(self, results: _Optional[_Iterable[_Union[PutChunkResult, _Mapping]]] = ..., used_bytes: _Optional[int] = ...) -> None: ...

class PutChunkResult(_message.Message):
    __slots__ = ("sha256", "success", "already_present", "error_code", "message")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ALREADY_PRESENT_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    success: bool
    already_present: bool
    error_code: str
    message: str
    def __init__(self, sha256: _Optional[str] = ..., success: _Optional[bool] = ..., already_present: _Optional[bool] = ..., error_code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class PutChunkRequest(_message.Message):
    __slots__ = ("sha256", "data", "cluster_secret", "upload_id", "write_token")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_SECRET_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    WRITE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    data: bytes
    cluster_secret: str
    upload_id: str
    write_token: str
    def __init__(self, sha256: _Optional[str] = ..., data: _Optional[bytes] = ..., cluster_secret: _Optional[str] = ..., upload_id: _Optional[str] = ..., write_token: _Optional[str] = ...) -> None: ...

class PutChunkResponse(_message.Message):
    __slots__ = ("success", "message", "used_bytes", "already_present", "receipt", "node_id")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    ALREADY_PRESENT_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    success: bool
    message: str
    used_bytes: int
    already_present: bool
    receipt: str
    node_id: str
    def __init__(self, success: _Optional[bool] = ..., message: _Optional[str] = ..., used_bytes: _Optional[int] = ..., already_present: _Optional[bool] = ..., receipt: _Optional[str] = ..., node_id: _Optional[str] = ...) -> None: ...

class GetChunkRequest(_message.Message):
    __slots__ = ("sha256", "offset", "length", "cluster_secret", "read_token")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_SECRET_FIELD_NUMBER: _ClassVar[int]
    READ_TOKEN_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    offset: int
    length: int
    cluster_secret: str
    read_token: str
    def __init__(self, sha256: _Optional[str] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ..., cluster_secret: _Optional[str] = ..., read_token: _Optional[str] = ...) -> None: ...

class GetChunkResponse(_message.Message):
    __slots__ = ("data", "chunk_size")
    DATA_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    chunk_size: int
    def __init__(self, data: _Optional[bytes] = ..., chunk_size: _Optional[int] = ...) -> None: ...

class DeleteChunksRequest(_message.Message):
    __slots__ = ("sha256", "cluster_secret", "skip_modified_within_s")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_SECRET_FIELD_NUMBER: _ClassVar[int]
    SKIP_MODIFIED_WITHIN_S_FIELD_NUMBER: _ClassVar[int]
    sha256: _containers.RepeatedScalarFieldContainer[str]
    cluster_secret: str
    skip_modified_within_s: int
    def __init__(self, sha256: _Optional[_Iterable[str]] = ..., cluster_secret: _Optional[str] = ..., skip_modified_within_s: _Optional[int] = ...) -> None: ...

class DeleteChunksResponse(_message.Message):
    __slots__ = ("deleted", "used_bytes")
    DELETED_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    used_bytes: int
    def __init__(self, deleted: _Optional[int] = ..., used_bytes: _Optional[int] = ...) -> None: ...

class HasChunksRequest(_message.Message):
    __slots__ = ("sha256", "cluster_secret")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_SECRET_FIELD_NUMBER: _ClassVar[int]
    sha256: _containers.RepeatedScalarFieldContainer[str]
    cluster_secret: str
    def __init__(self, sha256: _Optional[_Iterable[str]] = ..., cluster_secret: _Optional[str] = ...) -> None: ...

class HasChunksResponse(_message.Message):
    __slots__ = ("present",)
    PRESENT_FIELD_NUMBER: _ClassVar[int]
    present: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, present: _Optional[_Iterable[str]] = ...) -> None: ...

class ListChunksRequest(_message.Message):
    __slots__ = ("cluster_secret",)
    CLUSTER_SECRET_FIELD_NUMBER: _ClassVar[int]
    cluster_secret: str
    def __init__(self, cluster_secret: _Optional[str] = ...) -> None: ...

class ListChunksResponse(_message.Message):
    __slots__ = ("sha256", "sizes", "modified_unix")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZES_FIELD_NUMBER: _ClassVar[int]
    MODIFIED_UNIX_FIELD_NUMBER: _ClassVar[int]
    sha256: _containers.RepeatedScalarFieldContainer[str]
    sizes: _containers.RepeatedScalarFieldContainer[int]
    modified_unix: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, sha256: _Optional[_Iterable[str]] = ..., sizes: _Optional[_Iterable[int]] = ..., modified_unix: _Optional[_Iterable[int]] = ...) -> None: ...

class VerifyChunkRequest(_message.Message):
    __slots__ = ("sha256", "cluster_secret", "quarantine_if_corrupt")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_SECRET_FIELD_NUMBER: _ClassVar[int]
    QUARANTINE_IF_CORRUPT_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    cluster_secret: str
    quarantine_if_corrupt: bool
    def __init__(self, sha256: _Optional[str] = ..., cluster_secret: _Optional[str] = ..., quarantine_if_corrupt: _Optional[bool] = ...) -> None: ...

class VerifyChunkResponse(_message.Message):
    __slots__ = ("present", "valid")
    PRESENT_FIELD_NUMBER: _ClassVar[int]
    VALID_FIELD_NUMBER: _ClassVar[int]
    present: bool
    valid: bool
    def __init__(self, present: _Optional[bool] = ..., valid: _Optional[bool] = ...) -> None: ...

class FetchChunkFromRequest(_message.Message):
    __slots__ = ("sha256", "source_address", "cluster_secret")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_SECRET_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    source_address: str
    cluster_secret: str
    def __init__(self, sha256: _Optional[str] = ..., source_address: _Optional[str] = ..., cluster_secret: _Optional[str] = ...) -> None: ...
