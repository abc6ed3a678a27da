/*
 * cw_frame.c - crampwatch open frame v1 encoder, see cw_frame.h.
 *
 * The frame is COBS-encoded on the fly as its bytes are produced, with the
 * CRC computed alongside, so no scratch copy of the frame is needed.
 */
#include "cw_frame.h"

#include <string.h>

uint16_t cw_crc16(uint16_t crc, const uint8_t *data, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)((uint16_t)data[i] << 8);
        for (int b = 0; b < 8; b++) {
            crc = (crc & 0x8000u) ? (uint16_t)((crc << 1) ^ 0x1021u) : (uint16_t)(crc << 1);
        }
    }
    return crc;
}

/* Streaming COBS encoder with the CRC of the bytes put through it. */
typedef struct {
    uint8_t *out;
    size_t cap;
    size_t pos;       /* next free byte of out */
    size_t code_pos;  /* where the current block's code byte goes */
    uint8_t code;     /* 1 + bytes in the current block */
    int block_full;   /* the last block closed at 254 bytes; open a new one lazily */
    int overflow;
    size_t n_in;      /* frame bytes so far */
    uint16_t crc;
} cw_writer_t;

static void w_open_block(cw_writer_t *w)
{
    if (w->pos >= w->cap) {
        w->overflow = 1;
        return;
    }
    w->code_pos = w->pos++;
    w->code = 1;
    w->block_full = 0;
}

static void w_init(cw_writer_t *w, uint8_t *out, size_t cap)
{
    w->out = out;
    w->cap = cap;
    w->pos = 0;
    w->overflow = 0;
    w->n_in = 0;
    w->crc = 0xFFFFu;
    w_open_block(w);
}

static void w_put_raw(cw_writer_t *w, uint8_t byte)
{
    if (w->overflow) {
        return;
    }
    if (w->block_full) {
        w_open_block(w);
        if (w->overflow) {
            return;
        }
    }
    if (byte == 0) {
        w->out[w->code_pos] = w->code;
        w_open_block(w);
        return;
    }
    if (w->pos >= w->cap) {
        w->overflow = 1;
        return;
    }
    w->out[w->pos++] = byte;
    if (++w->code == 0xFFu) {
        w->out[w->code_pos] = w->code;
        w->block_full = 1;
    }
}

/* A frame byte: counted in the CRC, then encoded. */
static void w_put(cw_writer_t *w, uint8_t byte)
{
    w->crc = cw_crc16(w->crc, &byte, 1);
    w->n_in++;
    w_put_raw(w, byte);
}

static void w_u16(cw_writer_t *w, uint16_t v)
{
    w_put(w, (uint8_t)v);
    w_put(w, (uint8_t)(v >> 8));
}

static void w_u32(cw_writer_t *w, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        w_put(w, (uint8_t)(v >> (8 * i)));
    }
}

static void w_u64(cw_writer_t *w, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        w_put(w, (uint8_t)(v >> (8 * i)));
    }
}

static void w_f32(cw_writer_t *w, float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    w_u32(w, u);
}

static void w_header(cw_writer_t *w, const cw_header_t *h)
{
    w_put(w, CW_FRAME_VERSION);
    w_put(w, h->type);
    w_u16(w, h->seq);
    w_u64(w, h->device_time_us);
    w_u32(w, h->first_index);
    w_put(w, h->n_samples);
    w_put(w, h->channel_mask);
}

/* Append the CRC (little-endian), close the last block, add the delimiter. */
static size_t w_finish(cw_writer_t *w)
{
    uint16_t crc = w->crc;
    w_put_raw(w, (uint8_t)crc);
    w_put_raw(w, (uint8_t)(crc >> 8));
    w->n_in += CW_CRC_LEN;
    if (w->overflow || w->n_in > CW_MAX_FRAME_LEN) {
        return 0;
    }
    if (!w->block_full) {
        w->out[w->code_pos] = w->code;
    }
    if (w->pos >= w->cap) {
        return 0;
    }
    w->out[w->pos++] = 0x00;
    return w->pos;
}

size_t cw_frame_encode(const cw_header_t *h, const uint8_t *payload, size_t payload_len,
                       uint8_t *out, size_t out_cap)
{
    cw_writer_t w;
    if (CW_HEADER_LEN + payload_len + CW_CRC_LEN > CW_MAX_FRAME_LEN) {
        return 0;
    }
    w_init(&w, out, out_cap);
    w_header(&w, h);
    for (size_t i = 0; i < payload_len; i++) {
        w_put(&w, payload[i]);
    }
    return w_finish(&w);
}

static unsigned popcount8(uint8_t m)
{
    unsigned n = 0;
    for (; m; m &= (uint8_t)(m - 1)) {
        n++;
    }
    return n;
}

size_t cw_encode_samples(uint8_t type, uint16_t seq, uint64_t device_time_us,
                         uint32_t first_index, uint8_t channel_mask, uint8_t n_samples,
                         const int16_t *samples, uint8_t *out, size_t out_cap)
{
    cw_header_t h = {type, seq, device_time_us, first_index, n_samples, channel_mask};
    size_t n_values = (size_t)n_samples * popcount8(channel_mask);
    cw_writer_t w;
    if (CW_HEADER_LEN + 2u * n_values + CW_CRC_LEN > CW_MAX_FRAME_LEN) {
        return 0;
    }
    w_init(&w, out, out_cap);
    w_header(&w, &h);
    for (size_t i = 0; i < n_values; i++) {
        w_u16(&w, (uint16_t)samples[i]);
    }
    return w_finish(&w);
}

size_t cw_encode_info(uint16_t seq, uint64_t device_time_us, const cw_info_t *info,
                      uint8_t *out, size_t out_cap)
{
    cw_header_t h = {CW_TYPE_INFO, seq, device_time_us, 0, 0, 0};
    cw_writer_t w;
    w_init(&w, out, out_cap);
    w_header(&w, &h);
    w_f32(&w, info->emg_fs_hz);
    w_f32(&w, info->imu_fs_hz);
    w_f32(&w, info->emg_uv_per_count);
    w_f32(&w, info->acc_counts_per_g);
    w_put(&w, info->adc_bits);
    w_put(&w, info->emg_channel_mask);
    w_put(&w, info->imu_channel_mask);
    w_put(&w, info->fw_major);
    w_put(&w, info->fw_minor);
    w_put(&w, info->fw_patch);
    w_u16(&w, info->emg_frame_samples);
    w_f32(&w, info->frontend_gain);
    if (info->name) {
        for (size_t i = 0; i < 32 && info->name[i]; i++) {
            w_put(&w, (uint8_t)info->name[i]);
        }
    }
    return w_finish(&w);
}

size_t cw_encode_status(uint16_t seq, uint64_t device_time_us, const cw_status_t *st,
                        uint8_t *out, size_t out_cap)
{
    cw_header_t h = {CW_TYPE_STATUS, seq, device_time_us, 0, 0, 0};
    cw_writer_t w;
    w_init(&w, out, out_cap);
    w_header(&w, &h);
    w_u16(&w, st->battery_mv);
    w_put(&w, st->battery_pct);
    w_put(&w, st->flags);
    w_u32(&w, st->emg_dropped);
    w_u32(&w, st->imu_dropped);
    w_u32(&w, st->tx_dropped);
    w_u32(&w, st->uptime_s);
    return w_finish(&w);
}

size_t cw_encode_time_sync(uint16_t seq, uint64_t device_time_us, uint32_t token,
                           uint64_t device_rx_us, uint8_t *out, size_t out_cap)
{
    cw_header_t h = {CW_TYPE_TIME_SYNC, seq, device_time_us, 0, 0, 0};
    cw_writer_t w;
    w_init(&w, out, out_cap);
    w_header(&w, &h);
    w_u32(&w, token);
    w_u64(&w, device_rx_us);
    return w_finish(&w);
}

/* ---- device side: decoding ------------------------------------------------ */

static uint64_t rd_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

int cw_frame_decode(uint8_t *seg, size_t len, cw_header_t *h, const uint8_t **payload,
                    size_t *payload_len)
{
    size_t r = 0, w = 0;
    while (r < len) { /* COBS decode in place: w never passes r */
        uint8_t code = seg[r++];
        if (code == 0) {
            return 0;
        }
        for (uint8_t k = 1; k < code; k++) {
            if (r >= len || seg[r] == 0) {
                return 0;
            }
            seg[w++] = seg[r++];
        }
        if (code != 0xFFu && r < len) {
            seg[w++] = 0;
        }
    }
    if (w < CW_HEADER_LEN + CW_CRC_LEN || w > CW_MAX_FRAME_LEN) {
        return 0;
    }
    if (cw_crc16(0xFFFFu, seg, w - CW_CRC_LEN) != (uint16_t)rd_le(seg + w - CW_CRC_LEN, 2)) {
        return 0;
    }
    if (seg[0] != CW_FRAME_VERSION) {
        return 0;
    }
    h->type = seg[1];
    h->seq = (uint16_t)rd_le(seg + 2, 2);
    h->device_time_us = rd_le(seg + 4, 8);
    h->first_index = (uint32_t)rd_le(seg + 12, 4);
    h->n_samples = seg[16];
    h->channel_mask = seg[17];
    *payload = seg + CW_HEADER_LEN;
    *payload_len = w - CW_HEADER_LEN - CW_CRC_LEN;
    return 1;
}

void cw_rx_init(cw_rx_t *rx)
{
    rx->len = 0;
    rx->overflow = 0;
}

int cw_rx_push(cw_rx_t *rx, uint8_t byte, cw_header_t *h, const uint8_t **payload,
               size_t *payload_len)
{
    if (byte != 0) {
        if (rx->len < CW_RX_MAX) {
            rx->buf[rx->len++] = byte;
        } else {
            rx->overflow = 1;
        }
        return 0;
    }
    size_t len = rx->len;
    int overflow = rx->overflow;
    cw_rx_init(rx);
    if (overflow || len == 0) {
        return 0;
    }
    return cw_frame_decode(rx->buf, len, h, payload, payload_len);
}
