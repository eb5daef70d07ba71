%%%not-base64%%%
