"""The on-device model: dataset, training (optional TensorFlow extra), the model package and its
verification with the real TensorFlow Lite Micro interpreter (the `tflite-micro` wheel)."""
