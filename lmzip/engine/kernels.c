/* Exact attention for the CPU: the same integers as ExactLlama._attend (model.py).
 *
 * Built at first use by kernels.py with -ffp-contract=off and without -ffast-math, so
 * every float operation below is one correctly rounded IEEE operation in the order
 * written, exactly as the PyTorch reference performs them. Dot products and the
 * attention-weighted value sums run on integers (int8 in, int32 sums: exact), and the
 * remaining sums add exact integers, so their order does not matter either.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Horner coefficients of 2**-f on [0, 1): numerics.EXP2_POLY, passed in from Python. */
typedef struct {
    float c0, c1, c2, c3;
} poly_t;

/* round(2**bits * 2**-y) for y >= 0 (+inf gives 0), as numerics.exp2_neg_scaled.
 * Branch-free, so that loops calling it vectorize. */
static inline float exp2_neg_scaled(float y, int32_t bits, const poly_t *c) {
    const float top = (float)(bits + 2);
    y = y > top ? top : y;
    const float n = floorf(y);
    const float f = y - n;
    float p = f * c->c3;
    p = p + c->c2;
    p = p * f;
    p = p + c->c1;
    p = p * f;
    p = p + c->c0;
    const int32_t power_bits = (127 + bits - (int32_t)n) << 23;
    float power;
    memcpy(&power, &power_bits, sizeof power);
    return rintf(p * power);
}

/* Whether the query at position p sees the key at position kj (-1 = empty slot): the
 * sink (position 0) and the last window - 1 positions up to p, as model.attends. */
static inline int visible(int64_t kj, int64_t p, int64_t window) {
    return (kj >= 0) & (kj <= p) & ((kj == 0) | (kj > p - (window - 1)));
}

/*
 * The step path: one call handles query rows [row0, row1) of all B * KVH * R rows, in
 * (b, kv head, r) order. Shapes (contiguous): q [B, KVH, R, D] int8 with R = G * T rows
 * ordered (g, t); qsc [B, KVH, R] = query scale * log2(e) / sqrt(D); qpos [B, T];
 * vmax [B, KVH, T]; k, v [B, KVH, L, D] int8; ks, vs [B, KVH, L]; kpos [B, L];
 * out [B, T, KVH * G * D].
 */
void attend(int64_t row0, int64_t row1, int64_t KVH, int64_t G, int64_t T, int64_t L, int64_t D,
            int64_t window, int64_t bits, const float *coef, float mass_const,
            const int8_t *q, const float *qsc, const int64_t *qpos, const float *vmax,
            const int8_t *k, const float *ks, const int8_t *v, const float *vs, const int64_t *kpos,
            float *out) {
    poly_t c = {coef[0], coef[1], coef[2], coef[3]};
    float *score = malloc(sizeof(float) * (size_t)L);
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)L);
    int32_t *acc = malloc(sizeof(int32_t) * (size_t)D);
    const int64_t R = G * T;
    for (int64_t row = row0; row < row1; row++) {
        const int64_t task = row / R, r = row % R;
        const int64_t b = task / KVH, h = task % KVH, g = r / T, t = r % T;
        const int8_t *kb = k + task * L * D, *vb = v + task * L * D;
        const float *ksb = ks + task * L, *vsb = vs + task * L;
        const int64_t *kp = kpos + b * L;
        const int8_t *qr = q + row * D;
        const float qs = qsc[row];
        const int64_t p = qpos[b * T + t];
        int32_t n = 0;
        float peak = -INFINITY;
        for (int64_t j = 0; j < L; j++) {
            if (!visible(kp[j], p, window)) continue;
            const int8_t *kr = kb + j * D;
            int32_t dot = 0;
            for (int64_t d = 0; d < D; d++) dot += (int32_t)qr[d] * (int32_t)kr[d];
            const float s = ((float)dot * qs) * ksb[j];
            score[n] = s;
            idx[n++] = (int32_t)j;
            if (s > peak) peak = s;
        }
        double mass = 0.0; /* a sum of integers below 2**24: exact in any order */
        for (int32_t m = 0; m < n; m++) {
            score[m] = exp2_neg_scaled(-score[m] + peak, (int32_t)bits, &c);
            mass += score[m];
        }
        const float vm = vmax[task * T + t];
        const float cf = (float)((double)mass_const / (mass * (double)vm));
        memset(acc, 0, sizeof(int32_t) * (size_t)D);
        for (int32_t m = 0; m < n; m++) {
            const int32_t u = (int32_t)floorf((score[m] * vsb[idx[m]]) * cf);
            if (u == 0) continue;
            const int8_t *vr = vb + (int64_t)idx[m] * D;
            for (int64_t d = 0; d < D; d++) acc[d] += u * (int32_t)vr[d];
        }
        const float unit = vm / mass_const;
        float *o = out + ((b * T + t) * KVH * G + h * G + g) * D;
        for (int64_t d = 0; d < D; d++) o[d] = (float)acc[d] * unit;
    }
    free(score);
    free(idx);
    free(acc);
}

/*
 * The extend path: attention weights for one (sequence, kv head) from exact integer
 * scores; the products q.k and u.v run as int8 GEMMs (torch._int_mm) around it.
 * scores [R, L] int32 with R = G * T rows ordered (g, t); qsc [R]; qpos, vmax [T];
 * ks, vs, kpos [L]. Writes u = floor(e * s_v * c) (< 2**17, as _attend) as three base-128
 * digits, digits [3, R, L] int8 (least significant first), for rows [row0, row1).
 * Branch-free loops, so that the compiler vectorizes them; every lane still performs the
 * same IEEE operations in the same order as the reference.
 */
void weights(int64_t row0, int64_t row1, int64_t G, int64_t T, int64_t L, int64_t window, int64_t bits,
             const float *coef, float mass_const, const int32_t *scores, const float *qsc,
             const int64_t *qpos, const float *vmax, const float *ks, const float *vs,
             const int64_t *kpos, int8_t *digits) {
    poly_t c = {coef[0], coef[1], coef[2], coef[3]};
    float *e = malloc(sizeof(float) * (size_t)L);
    int32_t *ei = malloc(sizeof(int32_t) * (size_t)L);
    const int64_t R = G * T;
    for (int64_t r = row0; r < row1; r++) {
        const int64_t t = r % T, p = qpos[t];
        const int32_t *sr = scores + r * L;
        const float qs = qsc[r];
        int8_t *d0 = digits + r * L, *d1 = digits + (R + r) * L, *d2 = digits + (2 * R + r) * L;
        int64_t j;
        for (j = 0; j < L; j++) {
            const float s = ((float)sr[j] * qs) * ks[j];
            e[j] = visible(kpos[j], p, window) ? s : -INFINITY;
        }
        float lanes[16]; /* max is exact in any order: 16 independent lanes vectorize */
        for (int l = 0; l < 16; l++) lanes[l] = -INFINITY;
        for (j = 0; j + 16 <= L; j += 16)
            for (int l = 0; l < 16; l++) lanes[l] = e[j + l] > lanes[l] ? e[j + l] : lanes[l];
        float peak = -INFINITY;
        for (; j < L; j++) peak = e[j] > peak ? e[j] : peak;
        for (int l = 0; l < 16; l++) peak = lanes[l] > peak ? lanes[l] : peak;
        for (j = 0; j < L; j++) { /* hidden keys: -inf gives exactly 0 */
            e[j] = exp2_neg_scaled(-e[j] + peak, (int32_t)bits, &c);
            ei[j] = (int32_t)e[j];
        }
        int64_t mass = 0; /* integers: exact, and the sum vectorizes */
        for (j = 0; j < L; j++) mass += ei[j];
        const float cf = (float)((double)mass_const / ((double)mass * (double)vmax[t]));
        for (j = 0; j < L; j++) {
            const int32_t u = (int32_t)floorf((e[j] * vs[j]) * cf);
            d0[j] = (int8_t)(u & 127);
            d1[j] = (int8_t)((u >> 7) & 127);
            d2[j] = (int8_t)(u >> 14);
        }
    }
    free(e);
    free(ei);
}
