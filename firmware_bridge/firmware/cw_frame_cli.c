/*
 * cw_frame_cli.c - host-side harness for cw_frame.c (used by the test suite).
 *
 * Reads one frame description per line on stdin, writes the frame's wire
 * bytes as lowercase hex, one line each ("error" if the encoder refused).
 *
 *   samples <type> <seq> <time_us> <first_index> <mask> <n> <v0> <v1> ...
 *   frame <type> <seq> <time_us> <first_index> <n> <mask> <payload_hex or ->
 *   info <seq> <time_us> <emg_fs> <imu_fs> <uv_per_count> <counts_per_g> <adc_bits>
 *        <emg_mask> <imu_mask> <major> <minor> <patch> <frame_samples> <gain> [name]
 *   status <seq> <time_us> <mv> <pct> <flags> <emg_dropped> <imu_dropped> <tx_dropped> <uptime>
 *   time_sync <seq> <time_us> <token> <rx_us>
 *   decode <wire_hex>   (device side: every valid frame completed by these bytes,
 *                        "frame <type> <seq> <time_us> <first> <n> <mask> <payload_hex|->",
 *                        then "end"; the receiver state carries over between lines)
 *
 * Build: cc -std=c99 -Wall -Wextra -pedantic -O2 cw_frame.c cw_frame_cli.c -o cw_frame_cli
 */
#define _POSIX_C_SOURCE 200809L /* strtok_r */

#include "cw_frame.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint8_t out[CW_MAX_WIRE_LEN];

static void emit(size_t n)
{
    if (n == 0) {
        puts("error");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        printf("%02x", out[i]);
    }
    putchar('\n');
}

static unsigned long long next_u(char **save)
{
    char *tok = strtok_r(NULL, " \t\r\n", save);
    return tok ? strtoull(tok, NULL, 0) : 0;
}

static float next_f(char **save)
{
    char *tok = strtok_r(NULL, " \t\r\n", save);
    return tok ? strtof(tok, NULL) : 0.0f;
}

int main(void)
{
    static char line[65536];
    static int16_t samples[CW_MAX_FRAME_LEN];
    static uint8_t payload[CW_MAX_FRAME_LEN];
    static cw_rx_t rx;
    cw_rx_init(&rx);
    while (fgets(line, sizeof line, stdin)) {
        char *save = NULL;
        char *kind = strtok_r(line, " \t\r\n", &save);
        if (!kind) {
            continue;
        }
        if (strcmp(kind, "samples") == 0) {
            uint8_t type = (uint8_t)next_u(&save);
            uint16_t seq = (uint16_t)next_u(&save);
            uint64_t t = next_u(&save);
            uint32_t first = (uint32_t)next_u(&save);
            uint8_t mask = (uint8_t)next_u(&save);
            unsigned n = (unsigned)next_u(&save);
            unsigned n_values = 0;
            char *tok;
            while ((tok = strtok_r(NULL, " \t\r\n", &save)) && n_values < CW_MAX_FRAME_LEN) {
                samples[n_values++] = (int16_t)strtol(tok, NULL, 0);
            }
            emit(cw_encode_samples(type, seq, t, first, mask, (uint8_t)n, samples, out,
                                   sizeof out));
        } else if (strcmp(kind, "frame") == 0) {
            cw_header_t h;
            h.type = (uint8_t)next_u(&save);
            h.seq = (uint16_t)next_u(&save);
            h.device_time_us = next_u(&save);
            h.first_index = (uint32_t)next_u(&save);
            h.n_samples = (uint8_t)next_u(&save);
            h.channel_mask = (uint8_t)next_u(&save);
            char *hex = strtok_r(NULL, " \t\r\n", &save);
            size_t len = 0;
            if (hex && strcmp(hex, "-") != 0) {
                for (; hex[2 * len] && hex[2 * len + 1] && len < sizeof payload; len++) {
                    char byte[3] = {hex[2 * len], hex[2 * len + 1], 0};
                    payload[len] = (uint8_t)strtoul(byte, NULL, 16);
                }
            }
            emit(cw_frame_encode(&h, payload, len, out, sizeof out));
        } else if (strcmp(kind, "info") == 0) {
            cw_info_t info;
            uint16_t seq = (uint16_t)next_u(&save);
            uint64_t t = next_u(&save);
            info.emg_fs_hz = next_f(&save);
            info.imu_fs_hz = next_f(&save);
            info.emg_uv_per_count = next_f(&save);
            info.acc_counts_per_g = next_f(&save);
            info.adc_bits = (uint8_t)next_u(&save);
            info.emg_channel_mask = (uint8_t)next_u(&save);
            info.imu_channel_mask = (uint8_t)next_u(&save);
            info.fw_major = (uint8_t)next_u(&save);
            info.fw_minor = (uint8_t)next_u(&save);
            info.fw_patch = (uint8_t)next_u(&save);
            info.emg_frame_samples = (uint16_t)next_u(&save);
            info.frontend_gain = next_f(&save);
            info.name = strtok_r(NULL, "\r\n", &save);
            emit(cw_encode_info(seq, t, &info, out, sizeof out));
        } else if (strcmp(kind, "status") == 0) {
            cw_status_t st;
            uint16_t seq = (uint16_t)next_u(&save);
            uint64_t t = next_u(&save);
            st.battery_mv = (uint16_t)next_u(&save);
            st.battery_pct = (uint8_t)next_u(&save);
            st.flags = (uint8_t)next_u(&save);
            st.emg_dropped = (uint32_t)next_u(&save);
            st.imu_dropped = (uint32_t)next_u(&save);
            st.tx_dropped = (uint32_t)next_u(&save);
            st.uptime_s = (uint32_t)next_u(&save);
            emit(cw_encode_status(seq, t, &st, out, sizeof out));
        } else if (strcmp(kind, "time_sync") == 0) {
            uint16_t seq = (uint16_t)next_u(&save);
            uint64_t t = next_u(&save);
            uint32_t token = (uint32_t)next_u(&save);
            uint64_t rx = next_u(&save);
            emit(cw_encode_time_sync(seq, t, token, rx, out, sizeof out));
        } else if (strcmp(kind, "decode") == 0) {
            char *hex = strtok_r(NULL, " \t\r\n", &save);
            for (size_t i = 0; hex && hex[2 * i] && hex[2 * i + 1]; i++) {
                char byte[3] = {hex[2 * i], hex[2 * i + 1], 0};
                cw_header_t h;
                const uint8_t *pl;
                size_t pl_len;
                if (cw_rx_push(&rx, (uint8_t)strtoul(byte, NULL, 16), &h, &pl, &pl_len)) {
                    printf("frame %u %u %llu %lu %u %u ", h.type, h.seq,
                           (unsigned long long)h.device_time_us, (unsigned long)h.first_index,
                           h.n_samples, h.channel_mask);
                    for (size_t k = 0; k < pl_len; k++) {
                        printf("%02x", pl[k]);
                    }
                    puts(pl_len ? "" : "-");
                }
            }
            puts("end");
        } else {
            puts("error");
        }
        fflush(stdout);
    }
    return 0;
}
