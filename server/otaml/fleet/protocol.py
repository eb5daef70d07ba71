"""The device protocol's vocabulary, shared with the firmware (firmware/core/include/otaml_protocol.h).

manifests/README.md documents it; tests/server/test_protocol_vocabulary.py fails when this file, the JSON
schema of events and the C header disagree.
"""

from enum import StrEnum

# Request headers a device sends with every manifest poll (its check-in).
H_DEVICE_ID = "X-Otaml-Device-Id"
H_VERSION = "X-Otaml-Version"  # running app version (esp_app_desc_t.version)
H_PARTITION = "X-Otaml-Partition"  # running partition label, ota_0 / ota_1
H_OTA_STATE = "X-Otaml-Ota-State"  # esp_ota_img_states_t of the running partition, see OtaState
H_MANIFEST_VERSION = "X-Otaml-Manifest-Version"  # last manifest_version the device installed from
H_SECURE_VERSION = "X-Otaml-Secure-Version"
H_MODEL = "X-Otaml-Model"  # running model, "name/version" (optional)
H_ML_COUNTERS = "X-Otaml-Ml-Counters"  # predictions per class since boot: "healthy=12,unstable=0"
H_ML_LATENCY_US = "X-Otaml-Ml-Latency-Us"  # last inference latency
H_CONFIG_REVISION = "X-Otaml-Config-Revision"  # revision of the config document applied (0: none yet)
H_CONFIG_APPLIED = "X-Otaml-Config-Applied"  # properties the device runs: "alert_threshold=80,ml_interval_ms=200"
H_KEYSET_VERSION = "X-Otaml-Keyset-Version"  # version of the key set the device verifies manifests with (0: built in)
# Device health (optional): Wi-Fi signal, heap, uptime and why the device last reset.
H_RSSI = "X-Otaml-Rssi"  # dBm of the access point (wifi_ap_record_t.rssi), -128..127
H_FREE_HEAP = "X-Otaml-Free-Heap"  # bytes, esp_get_free_heap_size()
H_MIN_FREE_HEAP = "X-Otaml-Min-Free-Heap"  # bytes, esp_get_minimum_free_heap_size(): the low-water mark since boot
H_UPTIME_S = "X-Otaml-Uptime-S"  # seconds since boot (esp_timer_get_time() / 1e6)
H_RESET_REASON = "X-Otaml-Reset-Reason"  # esp_reset_reason(), see ResetReason
# Device auth is `Authorization: Bearer <device token>`.

# Response headers.
H_SIGNATURE = "X-Otaml-Signature"  # base64 DER ECDSA P-256 signature over the body
H_KEY_ID = "X-Otaml-Key-Id"
H_POLL_INTERVAL = "X-Otaml-Poll-Interval"  # seconds until the next poll (the device adds jitter)
H_CONFIG = "X-Otaml-Config"  # base64 desired-config document, sent when the device's revision is older
H_CONFIG_SIGNATURE = "X-Otaml-Config-Signature"  # base64 DER ECDSA P-256 by the server's online config key
H_NEW_TOKEN = "X-Otaml-New-Token"  # a rotated device token, only on an answer to a check-in with the current one
H_KEYSET = "X-Otaml-Keyset"  # base64 key-set document: the next one after the device's version
H_KEYSET_SIGNATURE = "X-Otaml-Keyset-Signature"  # base64 DER ECDSA P-256 by a key of the previous set


class OtaState(StrEnum):
    """ESP-IDF's esp_ota_img_states_t, lower-cased without the prefix."""

    NEW = "new"
    PENDING_VERIFY = "pending_verify"
    VALID = "valid"
    INVALID = "invalid"
    ABORTED = "aborted"
    UNDEFINED = "undefined"


class ResetReason(StrEnum):
    """ESP-IDF's esp_reset_reason_t (esp_system.h), lower-cased without the ESP_RST_ prefix."""

    UNKNOWN = "unknown"
    POWERON = "poweron"
    EXT = "ext"
    SW = "sw"
    PANIC = "panic"
    INT_WDT = "int_wdt"
    TASK_WDT = "task_wdt"
    WDT = "wdt"
    DEEPSLEEP = "deepsleep"
    BROWNOUT = "brownout"
    SDIO = "sdio"
    USB = "usb"
    JTAG = "jtag"
    EFUSE = "efuse"
    PWR_GLITCH = "pwr_glitch"
    CPU_LOCKUP = "cpu_lockup"


class EventKind(StrEnum):
    DOWNLOAD_STARTED = "download_started"
    DOWNLOAD_PROGRESS = "download_progress"  # a fixed fraction of the image is in flash (detail: "50%")
    DOWNLOAD_FAILED = "download_failed"  # transport error; the device retries (resuming) next poll
    VERIFIED = "verified"  # hash and size match; the boot slot is about to switch
    INSTALLED = "installed"  # boot slot switched, rebooting
    BOOTED = "booted"  # first boot of the new image, pending verification
    CONFIRMED = "confirmed"  # self-test passed, marked valid
    ROLLED_BACK = "rolled_back"  # self-test failed, reset while pending, or server unreachable; previous slot runs
    REJECTED = "rejected"  # refused a manifest or image; nothing was switched


class Reason(StrEnum):
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
    IMAGE_TOO_LARGE = "image_too_large"  # declared size does not fit the passive slot
    SIZE_MISMATCH = "size_mismatch"  # the server sent more or fewer bytes than declared
    HASH_MISMATCH = "hash_mismatch"
    IMAGE_INVALID = "image_invalid"  # bytes match but the image does not validate (header, app desc)
    DOWNLOAD_ERROR = "download_error"
    FLASH_ERROR = "flash_error"
    SELF_TEST_FAILED = "self_test_failed"
    RESET_WHILE_PENDING = "reset_while_pending"  # bootloader rolled back after a reset before confirm
    # A new image heard no answer from the server within its confirmation window: rolled back, but the
    # device may take that version again a bounded number of times (manifests/README.md, "Rollback").
    SERVER_UNREACHABLE = "server_unreachable"
