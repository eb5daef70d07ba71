/*
 * The ML interpreter of the POSIX port: the TensorFlow Lite Micro wheel (TFLM built for the host),
 * run as `python -m otaml.ml.tflm` in a worker process and spoken to over pipes. The simulator thus
 * runs its model through the real TFLM kernels; nothing here re-implements them.
 * Protocol: server/otaml/ml/tflm.py (_serve).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "otaml_sim_config.h" /* OTAML_PYTHON */
#include "otaml_port.h"
#include "sim_port.h"

static const char *TAG = "ml_worker";

static pid_t s_pid = -1;
static int s_to = -1, s_from = -1;
static size_t s_n_in, s_n_out;
static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER; /* the ML task and the gate share it */

uint64_t otaml_port_uptime_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static bool prv_write_all(const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = write(s_to, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

static bool prv_read_all(void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = read(s_from, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

/* Reads "O" + ok_len bytes, or "E" + message (logged). */
static otaml_status_t prv_reply(void *ok, size_t ok_len, otaml_status_t on_error)
{
    char tag;
    if (!prv_read_all(&tag, 1)) return OTAML_ERR_IO;
    if (tag == 'O') return prv_read_all(ok, ok_len) ? OTAML_OK : OTAML_ERR_IO;
    uint32_t n = 0;
    char msg[256] = "";
    if (tag == 'E' && prv_read_all(&n, 4) && n < sizeof(msg) && prv_read_all(msg, n)) msg[n] = '\0';
    OTAML_LOGE(TAG, "TFLM: %s", msg);
    return on_error;
}

static otaml_status_t prv_spawn(void)
{
    if (s_pid > 0) return OTAML_OK;
    int to[2], from[2];
    if (pipe2(to, O_CLOEXEC) != 0) return OTAML_ERR_IO;
    if (pipe2(from, O_CLOEXEC) != 0) {
        close(to[0]);
        close(to[1]);
        return OTAML_ERR_IO;
    }
    const char *python = getenv("OTAML_SIM_PYTHON");
    if (python == NULL || python[0] == '\0') python = OTAML_PYTHON;
    pid_t pid = fork();
    if (pid < 0) return OTAML_ERR_IO;
    if (pid == 0) {
        dup2(to[0], 0);
        dup2(from[1], 1);
        execl(python, python, "-m", "otaml.ml.tflm", (char *)NULL);
        fprintf(stderr, "cannot run %s: %s\n", python, strerror(errno));
        _exit(127);
    }
    close(to[0]);
    close(from[1]);
    s_pid = pid;
    s_to = to[1];
    s_from = from[0];
    signal(SIGPIPE, SIG_IGN); /* a dead worker shows as a failed write, not a dead simulator */
    return OTAML_OK;
}

otaml_status_t otaml_port_ml_load(const uint8_t *model, size_t len, size_t arena_bytes, size_t *n_in, size_t *n_out)
{
    pthread_mutex_lock(&s_lock);
    otaml_status_t st = prv_spawn();
    if (st == OTAML_OK) {
        uint8_t hdr[9] = {'L'};
        uint32_t a = (uint32_t)arena_bytes, l = (uint32_t)len;
        memcpy(hdr + 1, &a, 4);
        memcpy(hdr + 5, &l, 4);
        uint32_t dims[2] = {0, 0};
        st = prv_write_all(hdr, sizeof(hdr)) && prv_write_all(model, len) ? prv_reply(dims, sizeof(dims), OTAML_ERR_PARSE)
                                                                          : OTAML_ERR_IO;
        s_n_in = dims[0];
        s_n_out = dims[1];
        *n_in = s_n_in;
        *n_out = s_n_out;
    }
    pthread_mutex_unlock(&s_lock);
    return st;
}

otaml_status_t otaml_port_ml_invoke(const int8_t *in, size_t n_in, int8_t *out, size_t n_out)
{
    pthread_mutex_lock(&s_lock);
    otaml_status_t st = OTAML_ERR_STATE;
    if (s_pid > 0 && n_in == s_n_in && n_out == s_n_out) {
        char cmd = 'I';
        st = prv_write_all(&cmd, 1) && prv_write_all(in, n_in) ? prv_reply(out, n_out, OTAML_ERR_IO) : OTAML_ERR_IO;
    }
    pthread_mutex_unlock(&s_lock);
    return st;
}

void sim_ml_shutdown(void)
{
    pthread_mutex_lock(&s_lock);
    if (s_pid > 0) {
        close(s_to); /* EOF: the worker exits */
        close(s_from);
        waitpid(s_pid, NULL, 0);
        s_pid = -1;
    }
    pthread_mutex_unlock(&s_lock);
}
