"""ESP-IDF application images: what publishing checks before anything is signed."""
