/*
 * cw_frame.h - crampwatch open frame v1 encoder (reference implementation).
 *
 * Plain C99, no malloc, no platform dependencies: builds a frame (18-byte
 * header, payload, CRC-16/CCITT-FALSE) and COBS-encodes it, with its 0x00
 * delimiter, straight into a caller buffer.  The specification is
 * firmware_bridge/PROTOCOL.md; the Python twin is
 * crampwatch.firmware_bridge.protocols.openframe.Encoder, and the test suite
 * checks both produce the same bytes (firmware/test_vectors.json).
 *
 * Every encoder returns the number of bytes written to `out` (the whole
 * frame on the wire, delimiter included), or 0 if `out_cap` is too small or
 * the frame would exceed CW_MAX_FRAME_LEN.  Size `out` with CW_WIRE_LEN(n).
 * cw_rx_push() / cw_frame_decode() are the device side of the host's
 * commands (START, STOP, TIME_SYNC request, GET_INFO).
 * Floats are written as IEEE-754 binary32, which every supported MCU uses.
 */
#ifndef CW_FRAME_H
#define CW_FRAME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CW_FRAME_VERSION 1u

/* Frame types: bit 7 set = host -> device. */
#define CW_TYPE_EMG 0x01u
#define CW_TYPE_IMU 0x02u
#define CW_TYPE_STATUS 0x03u
#define CW_TYPE_INFO 0x04u
#define CW_TYPE_TIME_SYNC 0x05u
#define CW_TYPE_START 0x81u
#define CW_TYPE_STOP 0x82u
#define CW_TYPE_TIME_SYNC_REQUEST 0x83u
#define CW_TYPE_GET_INFO 0x84u

/* START payload bits (0 = all streams). */
#define CW_STREAM_EMG 0x01u
#define CW_STREAM_IMU 0x02u

/* STATUS flag bits. */
#define CW_STATUS_CHARGING 0x01u
#define CW_STATUS_STREAMING 0x02u
#define CW_STATUS_LEAD_OFF 0x04u
#define CW_STATUS_LOW_BATTERY 0x08u

#define CW_HEADER_LEN 18u
#define CW_CRC_LEN 2u
/* Largest frame before COBS: header + payload + CRC. */
#define CW_MAX_FRAME_LEN 1024u
/* Bytes on the wire for a frame of `frame_len` bytes (COBS + delimiter). */
#define CW_WIRE_LEN(frame_len) ((frame_len) + ((frame_len) + 253u) / 254u + 1u)
#define CW_MAX_WIRE_LEN CW_WIRE_LEN(CW_MAX_FRAME_LEN)
/* Wire size of a sample frame with n samples of c channels. */
#define CW_SAMPLES_WIRE_LEN(n, c) CW_WIRE_LEN(CW_HEADER_LEN + 2u * (n) * (c) + CW_CRC_LEN)

typedef struct {
    uint8_t type;
    uint16_t seq;            /* per link and direction, wraps at 2^16 */
    uint64_t device_time_us; /* device clock; 0 in host frames */
    uint32_t first_index;    /* index of the first sample in its stream, wraps at 2^32 */
    uint8_t n_samples;
    uint8_t channel_mask;    /* bit k = channel k present */
} cw_header_t;

typedef struct {
    float emg_fs_hz;
    float imu_fs_hz;
    float emg_uv_per_count;  /* microvolts per EMG count at the electrodes */
    float acc_counts_per_g;
    uint8_t adc_bits;
    uint8_t emg_channel_mask;
    uint8_t imu_channel_mask;
    uint8_t fw_major, fw_minor, fw_patch;
    uint16_t emg_frame_samples;
    float frontend_gain;
    const char *name;        /* UTF-8, at most 32 bytes are sent; may be NULL */
} cw_info_t;

typedef struct {
    uint16_t battery_mv;
    uint8_t battery_pct;     /* 255 = unknown */
    uint8_t flags;           /* CW_STATUS_* */
    uint32_t emg_dropped;    /* samples dropped on the device since boot */
    uint32_t imu_dropped;
    uint32_t tx_dropped;     /* frames the transmit queue dropped since boot */
    uint32_t uptime_s;
} cw_status_t;

/* CRC-16/CCITT-FALSE update (poly 0x1021); start with crc = 0xFFFF. */
uint16_t cw_crc16(uint16_t crc, const uint8_t *data, size_t len);

/* Any frame from a header and raw payload bytes. */
size_t cw_frame_encode(const cw_header_t *h, const uint8_t *payload, size_t payload_len,
                       uint8_t *out, size_t out_cap);

/* EMG or IMU frame: `samples` holds n_samples x popcount(channel_mask) int16
 * counts, sample-major; written little-endian whatever the CPU. */
size_t cw_encode_samples(uint8_t type, uint16_t seq, uint64_t device_time_us,
                         uint32_t first_index, uint8_t channel_mask, uint8_t n_samples,
                         const int16_t *samples, uint8_t *out, size_t out_cap);

size_t cw_encode_info(uint16_t seq, uint64_t device_time_us, const cw_info_t *info,
                      uint8_t *out, size_t out_cap);

size_t cw_encode_status(uint16_t seq, uint64_t device_time_us, const cw_status_t *st,
                        uint8_t *out, size_t out_cap);

/* Reply to a TIME_SYNC request: echo `token`; `device_rx_us` = device clock
 * when the request arrived, `device_time_us` = clock now. */
size_t cw_encode_time_sync(uint16_t seq, uint64_t device_time_us, uint32_t token,
                           uint64_t device_rx_us, uint8_t *out, size_t out_cap);

/* ---- device side: receiving the host's command frames ------------------- */

/* Largest encoded frame the receiver keeps; host frames are at most 26 bytes. */
#ifndef CW_RX_MAX
#define CW_RX_MAX 64u
#endif

typedef struct {
    uint8_t buf[CW_RX_MAX];
    size_t len;
    int overflow; /* the current segment is too long: drop it at its 0x00 */
} cw_rx_t;

void cw_rx_init(cw_rx_t *rx);

/* Feed one received byte.  Returns 1 when it completed a valid frame: then
 * *h is filled and *payload / *payload_len point into rx (valid until the
 * next call).  Returns 0 otherwise (more bytes needed, padding, or a bad
 * frame, which is dropped). */
int cw_rx_push(cw_rx_t *rx, uint8_t byte, cw_header_t *h, const uint8_t **payload,
               size_t *payload_len);

/* Decode one COBS segment (the bytes before a 0x00) in place and check its
 * length, CRC and version.  Returns 1 if valid. */
int cw_frame_decode(uint8_t *seg, size_t len, cw_header_t *h, const uint8_t **payload,
                    size_t *payload_len);

#ifdef __cplusplus
}
#endif

#endif /* CW_FRAME_H */
