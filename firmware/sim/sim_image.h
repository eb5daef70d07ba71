/*
 * The simulator's view of the image it booted: its bytes (for the directives, OTAML-SIM:..., that make a
 * test build misbehave) and the embedded files a device's linker would resolve.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** The image in OTA slot `slot`, NULL if it does not validate. Caller frees. */
uint8_t *sim_image_bytes(int slot, size_t *len);

/** Whether the image in `slot` contains `needle` (a simulation directive). */
bool sim_image_has(int slot, const char *needle);

/**
 * An embedded file's _binary_<symbol>_start and its length (without the NUL of a text file), as the
 * device's linker resolves them. A raw image keeps no symbols, so otaml.image.synthetic.model_payload
 * appends a table: "OTAML-SIM-SYMBOLS:", u32 count, then per symbol a NUL-padded name[32], the u32
 * distance from the table back to the data and the u32 length (little-endian).
 * @return a pointer into img, or NULL when the image does not link that file.
 */
const uint8_t *sim_image_symbol(const uint8_t *img, size_t len, const char *symbol, uint32_t *data_len);
