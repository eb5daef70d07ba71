"""The device protocol's vocabulary (manifests/README.md), as the C core's otaml_protocol.h has it.

tests/micropython/test_vocabulary.py fails when this file and server/otaml/fleet/protocol.py disagree.
"""

MAX_MANIFEST_BYTES = 4096
MAX_SIGNATURE_B64 = 128  # base64 of a DER ECDSA P-256 signature is at most 96 characters
MAX_CONFIG_BYTES = 512  # a desired-config document
MAX_CONFIG_B64 = 700  # base64 of 512 bytes is 684 characters

H_DEVICE_ID = "X-Otaml-Device-Id"
H_VERSION = "X-Otaml-Version"
H_PARTITION = "X-Otaml-Partition"
H_OTA_STATE = "X-Otaml-Ota-State"
H_MANIFEST_VERSION = "X-Otaml-Manifest-Version"
H_SECURE_VERSION = "X-Otaml-Secure-Version"
H_SIGNATURE = "X-Otaml-Signature"
H_KEY_ID = "X-Otaml-Key-Id"  # informational: the device trusts key_id inside the signed manifest
H_POLL_INTERVAL = "X-Otaml-Poll-Interval"
H_CONFIG_REVISION = "X-Otaml-Config-Revision"
H_CONFIG_APPLIED = "X-Otaml-Config-Applied"
H_CONFIG = "X-Otaml-Config"
H_CONFIG_SIGNATURE = "X-Otaml-Config-Signature"
H_MODEL = "X-Otaml-Model"
H_ML_COUNTERS = "X-Otaml-Ml-Counters"
H_ML_LATENCY_US = "X-Otaml-Ml-Latency-Us"
# Token rotation and key sets (manifests/README.md): this client does not take them yet; it omits
# X-Otaml-Keyset-Version, so the server sends it no key sets, and it keeps its token when one is handed over.
H_NEW_TOKEN = "X-Otaml-New-Token"
H_KEYSET_VERSION = "X-Otaml-Keyset-Version"
H_KEYSET = "X-Otaml-Keyset"
H_KEYSET_SIGNATURE = "X-Otaml-Keyset-Signature"
H_RSSI = "X-Otaml-Rssi"
H_FREE_HEAP = "X-Otaml-Free-Heap"
H_MIN_FREE_HEAP = "X-Otaml-Min-Free-Heap"
H_UPTIME_S = "X-Otaml-Uptime-S"
H_RESET_REASON = "X-Otaml-Reset-Reason"

# Fractions of an image at which a download reports progress (download_progress events).
DOWNLOAD_PROGRESS_PCT = (25, 50, 75)

# Reason codes, in the order of the C header's OTAML_REASON_LIST.
OK = "ok"
BAD_SIGNATURE = "bad_signature"
MANIFEST_TOO_LARGE = "manifest_too_large"
MANIFEST_MALFORMED = "manifest_malformed"
MANIFEST_EXPIRED = "manifest_expired"
MANIFEST_REPLAYED = "manifest_replayed"
KEY_MISMATCH = "key_mismatch"
PROJECT_MISMATCH = "project_mismatch"
CHIP_MISMATCH = "chip_mismatch"
CHANNEL_MISMATCH = "channel_mismatch"
SECURE_VERSION_LOWER = "secure_version_lower"
VERSION_FAILED_BEFORE = "version_failed_before"
IMAGE_TOO_LARGE = "image_too_large"
SIZE_MISMATCH = "size_mismatch"
HASH_MISMATCH = "hash_mismatch"
IMAGE_INVALID = "image_invalid"
DOWNLOAD_ERROR = "download_error"
FLASH_ERROR = "flash_error"
SELF_TEST_FAILED = "self_test_failed"
RESET_WHILE_PENDING = "reset_while_pending"
SERVER_UNREACHABLE = "server_unreachable"
REASONS = (OK, BAD_SIGNATURE, MANIFEST_TOO_LARGE, MANIFEST_MALFORMED, MANIFEST_EXPIRED, MANIFEST_REPLAYED,
           KEY_MISMATCH, PROJECT_MISMATCH, CHIP_MISMATCH, CHANNEL_MISMATCH, SECURE_VERSION_LOWER,
           VERSION_FAILED_BEFORE, IMAGE_TOO_LARGE, SIZE_MISMATCH, HASH_MISMATCH, IMAGE_INVALID, DOWNLOAD_ERROR,
           FLASH_ERROR, SELF_TEST_FAILED, RESET_WHILE_PENDING, SERVER_UNREACHABLE)

# Update events.
DOWNLOAD_STARTED = "download_started"
DOWNLOAD_PROGRESS = "download_progress"
DOWNLOAD_FAILED = "download_failed"
VERIFIED = "verified"
INSTALLED = "installed"
BOOTED = "booted"
CONFIRMED = "confirmed"
ROLLED_BACK = "rolled_back"
REJECTED = "rejected"
EVENTS = (DOWNLOAD_STARTED, DOWNLOAD_PROGRESS, DOWNLOAD_FAILED, VERIFIED, INSTALLED, BOOTED, CONFIRMED, ROLLED_BACK, REJECTED)

# esp_reset_reason_t (ESP-IDF esp_system.h) as X-Otaml-Reset-Reason spells it, indexed by its value.
RESET_REASONS = ("unknown", "poweron", "ext", "sw", "panic", "int_wdt", "task_wdt", "wdt", "deepsleep", "brownout",
                 "sdio", "usb", "jtag", "efuse", "pwr_glitch", "cpu_lockup")

# Decisions of the device checks.
UPDATE = "update"
NO_UPDATE = "no_update"
REJECT = "reject"

# esp_ota_img_states_t as the X-Otaml-Ota-State header spells them, indexed by the value otadata stores.
IMG_NEW = "new"
IMG_PENDING_VERIFY = "pending_verify"
IMG_VALID = "valid"
IMG_INVALID = "invalid"
IMG_ABORTED = "aborted"
IMG_UNDEFINED = "undefined"
IMG_STATES = (IMG_NEW, IMG_PENDING_VERIFY, IMG_VALID, IMG_INVALID, IMG_ABORTED)
