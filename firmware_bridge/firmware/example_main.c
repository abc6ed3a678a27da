/*
 * example_main.c - illustrative main loop of an open-frame board (ESP32 / nRF52 style).
 *
 * Not a complete firmware: the board-specific parts are the five `board_*`
 * hooks declared below (timer, ADC, accelerometer, link write/read, battery),
 * which an ESP-IDF, Zephyr or Arduino port implements.  It shows the
 * protocol duties of PROTOCOL.md section 1.13: a 0x00 on connection, INFO
 * and STATUS after START, sample indices that keep running when a frame is
 * dropped, time-sync replies, and never blocking the sampling on the link.
 *
 * The test suite compiles it (cc -c) to keep it in step with cw_frame.h.
 */
#include "cw_frame.h"

#include <stdbool.h>

/* ---- board hooks (implement per platform) ---- */
uint64_t board_time_us(void);                      /* monotonic microseconds */
bool board_emg_ready(int16_t counts[2]);           /* one EMG sample (2 ch) if due */
bool board_accel_ready(int16_t counts[3]);         /* one accelerometer sample if due */
bool board_link_write(const uint8_t *data, size_t len); /* false: tx queue full */
int board_link_read(void);                          /* next received byte or -1 */
uint16_t board_battery_mv(void);

#define EMG_FS_HZ 2000.0f
#define IMU_FS_HZ 200.0f
#define EMG_PER_FRAME 20u
#define IMU_PER_FRAME 10u
/* 12-bit ADC over 3.3 V after a x1000 front end, left-aligned to 16 bits */
#define EMG_UV_PER_COUNT (3.3e6f / 1000.0f / 65536.0f)
#define ACC_COUNTS_PER_G 4096.0f

static const cw_info_t info = {
    EMG_FS_HZ, IMU_FS_HZ, EMG_UV_PER_COUNT, ACC_COUNTS_PER_G, 12, 0x03, 0x07,
    1, 0, 0, EMG_PER_FRAME, 1000.0f, "crampwatch-diy"};

static struct {
    bool streaming;
    uint16_t seq;
    uint32_t emg_index, imu_index; /* index of the next sample of each stream */
    cw_status_t status;
    uint64_t next_status_us, next_info_us;
} st;

/* Send a frame; if the link cannot take it, count it and go on sampling. */
static void send(const uint8_t *wire, size_t n, uint32_t samples, uint32_t *dropped)
{
    st.seq++;
    if (n == 0 || !board_link_write(wire, n)) {
        st.status.tx_dropped++;
        if (dropped) {
            *dropped += samples;
        }
    }
}

static void send_info(void)
{
    uint8_t wire[CW_WIRE_LEN(CW_HEADER_LEN + 28u + 32u + CW_CRC_LEN)];
    send(wire, cw_encode_info(st.seq, board_time_us(), &info, wire, sizeof wire), 0, 0);
}

static void send_status(void)
{
    uint8_t wire[CW_WIRE_LEN(CW_HEADER_LEN + 20u + CW_CRC_LEN)];
    st.status.battery_mv = board_battery_mv();
    st.status.battery_pct = 255; /* unknown */
    st.status.flags = st.streaming ? CW_STATUS_STREAMING : 0;
    st.status.uptime_s = (uint32_t)(board_time_us() / 1000000u);
    send(wire, cw_encode_status(st.seq, board_time_us(), &st.status, wire, sizeof wire), 0, 0);
}

static void handle_command(const cw_header_t *h, const uint8_t *payload, size_t len,
                           uint64_t rx_us)
{
    switch (h->type) {
    case CW_TYPE_START:
        st.streaming = true;
        st.emg_index = st.imu_index = 0;
        send_info();
        send_status();
        st.next_status_us = rx_us + 1000000u;
        st.next_info_us = rx_us + 10000000u;
        break;
    case CW_TYPE_STOP:
        st.streaming = false;
        send_status();
        break;
    case CW_TYPE_GET_INFO:
        send_info();
        break;
    case CW_TYPE_TIME_SYNC_REQUEST:
        if (len >= 4) {
            uint8_t wire[CW_WIRE_LEN(CW_HEADER_LEN + 12u + CW_CRC_LEN)];
            uint32_t token = (uint32_t)payload[0] | (uint32_t)payload[1] << 8 |
                             (uint32_t)payload[2] << 16 | (uint32_t)payload[3] << 24;
            send(wire, cw_encode_time_sync(st.seq, board_time_us(), token, rx_us, wire,
                                           sizeof wire), 0, 0);
        }
        break;
    default:
        break; /* unknown types are ignored (forward compatible) */
    }
}

void crampwatch_main(void)
{
    static cw_rx_t rx;
    static int16_t emg[EMG_PER_FRAME][2], imu[IMU_PER_FRAME][3];
    static uint8_t wire[CW_SAMPLES_WIRE_LEN(EMG_PER_FRAME, 2)];
    unsigned n_emg = 0, n_imu = 0;
    uint64_t emg_t0 = 0, imu_t0 = 0;
    const uint8_t hello = 0x00;

    cw_rx_init(&rx);
    board_link_write(&hello, 1); /* the host drops any partial frame it holds */
    for (;;) {
        int c;
        while ((c = board_link_read()) >= 0) {
            cw_header_t h;
            const uint8_t *payload;
            size_t len;
            if (cw_rx_push(&rx, (uint8_t)c, &h, &payload, &len)) {
                handle_command(&h, payload, len, board_time_us());
            }
        }
        if (board_emg_ready(emg[n_emg]) && st.streaming) {
            if (n_emg == 0) {
                emg_t0 = board_time_us();
            }
            if (++n_emg == EMG_PER_FRAME) {
                send(wire, cw_encode_samples(CW_TYPE_EMG, st.seq, emg_t0, st.emg_index, 0x03,
                                             EMG_PER_FRAME, &emg[0][0], wire, sizeof wire),
                     EMG_PER_FRAME, &st.status.emg_dropped);
                st.emg_index += EMG_PER_FRAME; /* runs on even if the frame was dropped */
                n_emg = 0;
            }
        }
        if (board_accel_ready(imu[n_imu]) && st.streaming) {
            if (n_imu == 0) {
                imu_t0 = board_time_us();
            }
            if (++n_imu == IMU_PER_FRAME) {
                send(wire, cw_encode_samples(CW_TYPE_IMU, st.seq, imu_t0, st.imu_index, 0x07,
                                             IMU_PER_FRAME, &imu[0][0], wire, sizeof wire),
                     IMU_PER_FRAME, &st.status.imu_dropped);
                st.imu_index += IMU_PER_FRAME;
                n_imu = 0;
            }
        }
        if (st.streaming && board_time_us() >= st.next_status_us) {
            send_status();
            st.next_status_us += 1000000u;
        }
        if (st.streaming && board_time_us() >= st.next_info_us) {
            send_info();
            st.next_info_us += 10000000u;
        }
    }
}
