#!/usr/bin/env node
// The otaml MicroPython package on the WebAssembly MicroPython (npm @micropython/micropython-webassembly-pyscript,
// a real MicroPython 1.27, 32-bit like the ESP32's) under Node: the host device and the test harness.
//
//   node otaml-mpy.mjs --flash FILE run --server URL --device-id ID [--token T] [options]   a device
//   node otaml-mpy.mjs exec SCRIPT.py [ARGS...]                                              a script
//
// The flash file has otaml-sim's layout (firmware/port/posix/sim_flash.h), so `otaml-sim --flash FILE
// flash IMAGE` prepares it and `otaml-sim --flash FILE info` reads it. This file is the hardware only:
// a NOR flash chip (reads, AND-writes, 4 KB erases) and the reset line. Everything the device decides,
// including the bootloader's slot selection, runs in MicroPython (otaml_host.py beside this file).
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { spawnSync } from "node:child_process";
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PACKAGE = path.resolve(HERE, "..", "otaml");
const ROOT = path.resolve(HERE, "..", "..", "..");
const FLASH_SIZE = 4 * 1024 * 1024;
const SECTOR = 4096;

function usage() {
  process.stderr.write(
    "usage: otaml-mpy.mjs --flash FILE run --server URL --device-id ID [--token T] [--channel C] [--chip esp32]\n" +
      "                     [--polls N] [--interval-ms MS] [--ml-interval-ms MS] [--download-rate BYTES_PER_S]\n" +
      "                     [--no-trusted-time] [--verbose] [--manifest-key PEM] [--config-key PEM] [--project P]\n" +
      "                     [--confirm-window-s S] [--confirm-backoff-min-ms MS] [--confirm-backoff-max-ms MS]\n" +
      "                     [--unreachable-retakes N] [--ip-after-ms MS] [--rssi DBM] [--progress-min-bytes N]\n" +
      "       otaml-mpy.mjs exec SCRIPT.py [ARGS...]\n",
  );
  process.exit(2);
}

function parseArgs(argv) {
  const o = {
    channel: "stable", chip: "esp32", project: "otaml", polls: 0, interval_ms: 0, ml_interval_ms: 200,
    download_rate: 0, trusted_time: true, verbose: false, confirm_window_s: 300, confirm_backoff_min_ms: 1000,
    confirm_backoff_max_ms: 30000, unreachable_retakes: 3, ip_after_ms: 0, rssi: -58, progress_min_bytes: 262144,
    manifest_key: path.join(ROOT, "manifests", "keys", "test-release.pub.pem"),
    config_key: path.join(ROOT, "manifests", "keys", "test-config.pub.pem"),
    samples: path.join(ROOT, "firmware", "model", "samples.csv"),
  };
  const rest = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => { if (i + 1 >= argv.length) usage(); return argv[++i]; };
    const num = () => { const v = Number(val()); if (!Number.isInteger(v) || v < 0) usage(); return v; };
    if (o.command === "exec" && rest.length > 0) { rest.push(a); continue; }
    switch (a) {
      case "--flash": o.flash = val(); break;
      case "--server": o.server = val(); break;
      case "--device-id": o.device_id = val(); break;
      case "--token": o.token = val(); break;
      case "--channel": o.channel = val(); break;
      case "--chip": o.chip = val(); break;
      case "--project": o.project = val(); break;
      case "--polls": o.polls = num(); break;
      case "--interval-ms": o.interval_ms = num(); break;
      case "--ml-interval-ms": o.ml_interval_ms = num(); break;
      case "--download-rate": o.download_rate = num(); break;
      case "--no-trusted-time": o.trusted_time = false; break;
      case "--verbose": o.verbose = true; break;
      case "--manifest-key": o.manifest_key = val(); break;
      case "--config-key": o.config_key = val(); break;
      case "--samples": o.samples = val(); break;
      case "--confirm-window-s": o.confirm_window_s = num(); break;
      case "--confirm-backoff-min-ms": o.confirm_backoff_min_ms = num(); break;
      case "--confirm-backoff-max-ms": o.confirm_backoff_max_ms = num(); break;
      case "--unreachable-retakes": o.unreachable_retakes = num(); break;
      case "--ip-after-ms": o.ip_after_ms = num(); break;
      case "--rssi": { const v = Number(val()); if (!Number.isInteger(v) || v < -127 || v > 0) usage(); o.rssi = v; break; }
      case "--progress-min-bytes": o.progress_min_bytes = num(); break;
      default:
        if (a.startsWith("--")) usage();
        if (!o.command) o.command = a; else rest.push(a);
    }
  }
  o.rest = rest;
  return o;
}

// ---- the flash chip ----

class Flash {
  constructor(file) {
    this.fd = fs.openSync(file, "r+");
    const size = fs.fstatSync(this.fd).size;
    if (size !== FLASH_SIZE) throw new Error(`${file} is ${size} bytes, expected a ${FLASH_SIZE}-byte flash image`);
  }
  check(off, len) {
    if (!Number.isInteger(off) || !Number.isInteger(len) || off < 0 || len < 0 || off + len > FLASH_SIZE) {
      throw new RangeError(`flash access 0x${off.toString(16)}+${len} outside the chip`);
    }
  }
  read(off, len) {
    this.check(off, len);
    const buf = Buffer.alloc(len);
    fs.readSync(this.fd, buf, 0, len, off);
    return new Uint8Array(buf.buffer, buf.byteOffset, len);
  }
  write(off, hex) { // NOR: a write only clears bits
    const data = Buffer.from(hex, "hex");
    this.check(off, data.length);
    const old = Buffer.alloc(data.length);
    fs.readSync(this.fd, old, 0, data.length, off);
    for (let i = 0; i < data.length; i++) old[i] &= data[i];
    fs.writeSync(this.fd, old, 0, old.length, off);
  }
  erase(off, len) {
    this.check(off, len);
    if (off % SECTOR || len % SECTOR) throw new RangeError("erase must be sector-aligned");
    fs.writeSync(this.fd, Buffer.alloc(len, 0xff), 0, len, off);
  }
}

// ---- MicroPython ----

function copyPackage(mp) {
  mp.FS.mkdirTree("/lib/otaml");
  for (const name of fs.readdirSync(PACKAGE)) {
    if (name.endsWith(".py")) mp.FS.writeFile(`/lib/otaml/${name}`, fs.readFileSync(path.join(PACKAGE, name)));
  }
  mp.FS.writeFile("/lib/otaml_host.py", fs.readFileSync(path.join(HERE, "otaml_host.py")));
}

async function boot(hostModule) {
  const mp = await loadMicroPython({
    heapsize: 8 * 1024 * 1024,
    stdout: (line) => process.stdout.write(line + "\n"),
    stderr: (line) => process.stderr.write(line + "\n"),
  });
  copyPackage(mp);
  mp.registerJsModule("otaml_hostjs", hostModule);
  return mp;
}

function pythonError(e) {
  if (e && e.name === "PythonError") {
    process.stderr.write(`MicroPython: ${String(e.message).slice(0, 4000)}\n`);
    return true;
  }
  return false;
}

const opts = parseArgs(process.argv.slice(2));
const readFile = (p) => { const b = fs.readFileSync(p); return new Uint8Array(b.buffer, b.byteOffset, b.length); };

if (opts.command === "exec") {
  if (opts.rest.length < 1) usage();
  const script = fs.readFileSync(opts.rest[0], "utf8");
  const mp = await boot({ argv: opts.rest, read_file: readFile, root: ROOT });
  try {
    await mp.runPythonAsync(script);
  } catch (e) {
    if (!pythonError(e)) throw e;
    process.exit(1);
  }
  process.exit(0);
} else if (opts.command === "run") {
  if (!opts.flash || !opts.server || !opts.device_id) usage();
  const flash = new Flash(opts.flash);
  const config = {
    server: opts.server, device_id: opts.device_id, token: opts.token ?? "", channel: opts.channel, chip: opts.chip,
    project: opts.project, polls: opts.polls, interval_ms: opts.interval_ms, ml_interval_ms: opts.ml_interval_ms,
    download_rate: opts.download_rate, trusted_time: opts.trusted_time, verbose: opts.verbose,
    confirm_window_s: opts.confirm_window_s, confirm_backoff_min_ms: opts.confirm_backoff_min_ms,
    confirm_backoff_max_ms: opts.confirm_backoff_max_ms, unreachable_retakes: opts.unreachable_retakes,
    ip_after_ms: opts.ip_after_ms, rssi: opts.rssi, progress_min_bytes: opts.progress_min_bytes,
    manifest_keys: [fs.readFileSync(opts.manifest_key, "utf8")], config_keys: [fs.readFileSync(opts.config_key, "utf8")],
    samples: fs.existsSync(opts.samples) ? fs.readFileSync(opts.samples, "utf8") : "",
  };
  // Time since power-on survives a reset (Wi-Fi comes up --ip-after-ms after it), so a reboot passes it
  // on, with the reason the next boot reports: a power-on first, a software reset after each reboot.
  const started = Number(process.env.OTAML_MPY_POWER_ON_MS) || Date.now();
  config.reset_reason = process.env.OTAML_MPY_RESET_REASON === "sw" ? "sw" : "poweron";
  let outcome = "none";
  const host = {
    set_outcome: (o) => { outcome = o; },
    config: JSON.stringify(config),
    flash_read: (off, len) => flash.read(off, len),
    flash_write: (off, hex) => flash.write(off, hex),
    flash_erase: (off, len) => flash.erase(off, len),
    millis_since_power_on: () => Date.now() - started,
  };
  const mp = await boot(host);
  try {
    await mp.runPythonAsync("import otaml_host\nawait otaml_host.main()");
  } catch (e) {
    if (!pythonError(e)) throw e;
    process.exit(1);
  }
  if (outcome !== "reboot") process.exit(outcome === "ok" ? 0 : 3);
  // A reset loses all RAM: the next boot is a new process (a second interpreter in this one would share
  // it with the first one's timers and pending promises, which can still fire). The flash file stays.
  const next = spawnSync(process.execPath, process.argv.slice(1), {
    stdio: "inherit", env: { ...process.env, OTAML_MPY_POWER_ON_MS: String(started), OTAML_MPY_RESET_REASON: "sw" },
  });
  process.exit(next.status ?? 1);
} else {
  usage();
}
