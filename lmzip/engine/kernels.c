/* Exact attention for the CPU, the same integers as ExactLlama._attend (model.py), and the
 * range coder's intervals straight from logits, the integers of frequencies.Frequencies.
 *
 * Built at first use by kernels.py with -ffp-contract=off and without -ffast-math, so
 * every float operation below is one correctly rounded IEEE operation in the order
 * written, exactly as the PyTorch reference performs them. Dot products and the
 * attention-weighted value sums run on integers (int8 in, int32 sums: exact), and the
 * remaining sums add exact integers, so their order does not matter either.
 */
#include <math.h>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif
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

/* dots[g * L + j] = q_g . k_j for G query rows q_g = q + g * q_stride (the query heads of
 * one KV head) and L keys of D int8 each (exact int32). With AVX-512 VNNI: vpdpbusd
 * multiplies unsigned by signed bytes, so the key enters as k + 128 (k ^ 0x80) and
 * 128 * sum(q_g) comes off again; sixteen keys' lane sums are reduced together. The
 * sixteen keys serve every head while they sit in L1: one pass over the keys, not G. */
enum { KEYS_AHEAD = 32 }; /* key rows prefetched ahead (may run past the last key: prefetches do not fault) */
static void dot_rows(const int8_t *q, int64_t q_stride, int64_t G, const int8_t *k, int64_t L, int64_t D,
                     int32_t *dots) {
    int64_t j = 0;
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
    if (D % 64 == 0 && D <= 256) {
        const int64_t nv = D / 64;
        const __m512i flip = _mm512_set1_epi8((char)0x80);
        int32_t qsum[G];
        for (int64_t g = 0; g < G; g++) {
            qsum[g] = 0;
            for (int64_t d = 0; d < D; d++) qsum[g] += q[g * q_stride + d];
        }
        for (; j + 16 <= L; j += 16) {
            for (int i = 0; i < 16; i++) /* the cache streams from memory */
                for (int64_t c = 0; c < nv; c++) _mm_prefetch((const char *)(k + (j + i + KEYS_AHEAD) * D + 64 * c), _MM_HINT_T0);
            for (int64_t g = 0; g < G; g++) {
                __m512i qv[4], a[16];
                for (int64_t c = 0; c < nv; c++) qv[c] = _mm512_loadu_si512(q + g * q_stride + 64 * c);
                for (int i = 0; i < 16; i++) {
                    const int8_t *kr = k + (j + i) * D;
                    __m512i acc = _mm512_setzero_si512();
                    for (int64_t c = 0; c < nv; c++)
                        acc = _mm512_dpbusd_epi32(acc, _mm512_xor_si512(_mm512_loadu_si512(kr + 64 * c), flip), qv[c]);
                    a[i] = acc;
                }
                /* transpose-and-add: after the four rounds lane i holds key i's total */
                for (int i = 0; i < 8; i++) {
                    const __m512i lo = _mm512_unpacklo_epi32(a[2 * i], a[2 * i + 1]);
                    const __m512i hi = _mm512_unpackhi_epi32(a[2 * i], a[2 * i + 1]);
                    a[i] = _mm512_add_epi32(lo, hi);
                }
                for (int i = 0; i < 4; i++) {
                    const __m512i lo = _mm512_unpacklo_epi64(a[2 * i], a[2 * i + 1]);
                    const __m512i hi = _mm512_unpackhi_epi64(a[2 * i], a[2 * i + 1]);
                    a[i] = _mm512_add_epi32(lo, hi);
                }
                for (int i = 0; i < 2; i++) {
                    const __m512i lo = _mm512_shuffle_i32x4(a[2 * i], a[2 * i + 1], 0x88);
                    const __m512i hi = _mm512_shuffle_i32x4(a[2 * i], a[2 * i + 1], 0xDD);
                    a[i] = _mm512_add_epi32(lo, hi);
                }
                const __m512i lo = _mm512_shuffle_i32x4(a[0], a[1], 0x88);
                const __m512i hi = _mm512_shuffle_i32x4(a[0], a[1], 0xDD);
                const __m512i corr = _mm512_set1_epi32(128 * qsum[g]);
                _mm512_storeu_si512(dots + g * L + j, _mm512_sub_epi32(_mm512_add_epi32(lo, hi), corr)); /* keys in order */
            }
        }
    }
#elif defined(__AVX2__)
    /* AVX2 only: keys and queries widened to int16, vpmaddwd into exact int32 pairs
     * (|q k| <= 128 * 128); eight keys' lane sums reduced together by a tree of hadds. */
    if (D % 16 == 0 && D <= 256) {
        const int64_t nv = D / 16;
        int16_t qw[G * D];
        for (int64_t g = 0; g < G; g++)
            for (int64_t d = 0; d < D; d++) qw[g * D + d] = q[g * q_stride + d];
        for (; j + 8 <= L; j += 8) {
            for (int i = 0; i < 8; i++) _mm_prefetch((const char *)(k + (j + i + KEYS_AHEAD) * D), _MM_HINT_T0);
            for (int64_t g = 0; g < G; g++) {
                __m256i a[8];
                for (int i = 0; i < 8; i++) {
                    const int8_t *kr = k + (j + i) * D;
                    __m256i acc = _mm256_setzero_si256();
                    for (int64_t c = 0; c < nv; c++) {
                        const __m256i kv = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(kr + 16 * c)));
                        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(kv, _mm256_loadu_si256((const __m256i *)(qw + g * D + 16 * c))));
                    }
                    a[i] = acc;
                }
                /* hadd rounds: lanes (0-3 | 4-7) end as keys (0-3 | 0-3) of the two halves' sums */
                const __m256i h01 = _mm256_hadd_epi32(a[0], a[1]), h23 = _mm256_hadd_epi32(a[2], a[3]);
                const __m256i h45 = _mm256_hadd_epi32(a[4], a[5]), h67 = _mm256_hadd_epi32(a[6], a[7]);
                const __m256i h0123 = _mm256_hadd_epi32(h01, h23), h4567 = _mm256_hadd_epi32(h45, h67);
                const __m256i lo = _mm256_permute2x128_si256(h0123, h4567, 0x20);
                const __m256i hi = _mm256_permute2x128_si256(h0123, h4567, 0x31);
                _mm256_storeu_si256((__m256i *)(dots + g * L + j), _mm256_add_epi32(lo, hi)); /* keys in order */
            }
        }
    }
#endif
    for (; j < L; j++) /* the keys the vector loop left (all of them without AVX-512 or AVX2) */
        for (int64_t g = 0; g < G; g++) {
            const int8_t *qg = q + g * q_stride, *kr = k + j * D;
            int32_t dot = 0;
            for (int64_t d = 0; d < D; d++) dot += (int32_t)qg[d] * (int32_t)kr[d];
            dots[g * L + j] = dot;
        }
}

/* hide[j] = 0 for the keys the query at position p sees, -inf for the others. */
static void hide_keys(const int64_t *kpos, int64_t L, int64_t p, int64_t window, float *hide) {
    for (int64_t j = 0; j < L; j++) hide[j] = visible(kpos[j], p, window) ? 0.0f : -INFINITY;
}

/* One query row's attention weights from its exact scores, as _attend in model.py:
 * logit s_j = (dot_j * qs) * ks_j for visible keys (+ hide_j: -inf, or 0, which leaves
 * s_j as it is: s_j is never -0), e_j = round(2**bits * 2**(s_j - peak)),
 * u_j = floor((e_j * vs_j) * c) with c = mass_const / (sum e * vm), so sum u < 2**17.
 * e and u are scratch/outputs of L entries. The loops vectorize (the max explicitly);
 * every lane still performs the reference's IEEE operations in order. */
static void row_weights(const int32_t *dots, int64_t L, float qs, const float *hide, const float *ks,
                        const float *vs, float vm, int32_t bits, const poly_t *c, float mass_const, float *e,
                        int32_t *u) {
    int64_t j = 0;
    float peak = -INFINITY;
#if defined(__AVX512F__)
    __m512 top = _mm512_set1_ps(-INFINITY);
    const __m512 qv = _mm512_set1_ps(qs);
    for (; j + 16 <= L; j += 16) {
        __m512 x = _mm512_cvtepi32_ps(_mm512_loadu_si512(dots + j));
        x = _mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(x, qv), _mm512_loadu_ps(ks + j)), _mm512_loadu_ps(hide + j));
        _mm512_storeu_ps(e + j, x);
        top = _mm512_max_ps(top, x); /* the max is exact in any order */
    }
    peak = _mm512_reduce_max_ps(top);
#endif
    for (; j < L; j++) {
        const float x = ((float)dots[j] * qs) * ks[j] + hide[j];
        e[j] = x;
        peak = x > peak ? x : peak;
    }
    int32_t mass = 0; /* integers, at most L * 2**bits <= 2**24: exact, and the sum vectorizes */
    for (j = 0; j < L; j++) { /* hidden keys: -inf gives exactly 0 */
        e[j] = exp2_neg_scaled(-e[j] + peak, bits, c);
        mass += (int32_t)e[j];
    }
    const float cf = (float)((double)mass_const / ((double)mass * (double)vm));
    for (j = 0; j < L; j++) u[j] = (int32_t)floorf((e[j] * vs[j]) * cf);
}

/* acc[g][d] = sum_j u[g][j] * v_j[d] for the G query heads of one KV head, in float:
 * every partial sum is an integer below sum_j u_j * 127 < 2**24 (ATTN_MASS), so each
 * product and addition is exact, in any order, with or without FMA (the reference's
 * float matmul gives the same integers). Each value row is loaded once for the G heads,
 * and only for the keys that weigh anything in one of them: most keys of a long window
 * weigh 0, and their indices are gathered first without branches. idx: L scratch. */
enum { VALUES_AHEAD = 32 }; /* value rows prefetched ahead */
#if defined(__AVX512F__)
/* hb heads x nv vectors of 16 values (hb * nv <= 16 accumulators), unrolled at constant hb, nv */
static inline __attribute__((always_inline)) void values_tile(const int nv, const int hb, const int32_t *u, int64_t L,
                                                               const int8_t *v, int64_t D, const int32_t *idx,
                                                               int64_t n, float *acc) {
    __m512 a[16];
    for (int i = 0; i < hb * nv; i++) a[i] = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i++) {
        const int64_t j = idx[i];
        const int8_t *vr = v + j * D;
        if (i + VALUES_AHEAD < n) /* the rows come from memory, in an order the hardware cannot guess */
            for (int c = 0; c < nv; c += 4) _mm_prefetch((const char *)(v + idx[i + VALUES_AHEAD] * D + 16 * c), _MM_HINT_T0);
        __m512 x[8];
        for (int c = 0; c < nv; c++)
            x[c] = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(vr + 16 * c))));
        for (int g = 0; g < hb; g++) {
            const __m512 w = _mm512_set1_ps((float)u[g * L + j]);
            for (int c = 0; c < nv; c++) a[g * nv + c] = _mm512_fmadd_ps(x[c], w, a[g * nv + c]);
        }
    }
    for (int g = 0; g < hb; g++)
        for (int c = 0; c < nv; c++) _mm512_storeu_ps(acc + g * D + 16 * c, a[g * nv + c]);
}
#endif

#if defined(__AVX2__) && !defined(__AVX512F__)
/* AVX2 only: hb heads x nv vectors of 8 values (hb * nv = 8 accumulators), as values_tile. */
static inline __attribute__((always_inline)) void values_tile8(const int nv, const int hb, const int32_t *u, int64_t L,
                                                                const int8_t *v, int64_t D, const int32_t *idx,
                                                                int64_t n, float *acc) {
    __m256 a[8];
    for (int i = 0; i < hb * nv; i++) a[i] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n; i++) {
        const int8_t *vr = v + (int64_t)idx[i] * D;
        if (i + VALUES_AHEAD < n) _mm_prefetch((const char *)(v + idx[i + VALUES_AHEAD] * D), _MM_HINT_T0);
        for (int c = 0; c < nv; c++) {
            const __m256 x = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(vr + 8 * c))));
            for (int g = 0; g < hb; g++)
                a[g * nv + c] = _mm256_fmadd_ps(x, _mm256_set1_ps((float)u[g * L + idx[i]]), a[g * nv + c]);
        }
    }
    for (int g = 0; g < hb; g++)
        for (int c = 0; c < nv; c++) _mm256_storeu_ps(acc + g * D + 8 * c, a[g * nv + c]);
}
#endif

static void weighted_values(const int32_t *u, int64_t G, int64_t L, const int8_t *v, int64_t D, int32_t *idx,
                            float *acc) {
    for (int64_t g0 = 0; g0 < G;) {
        int64_t hb = G - g0;
#if defined(__AVX512F__)
        const int64_t nv = D / 16;
        if (D % 16 == 0 && nv <= 8) hb = hb < 16 / nv ? hb : 16 / nv;
#elif defined(__AVX2__)
        const int64_t nv = D / 8;
        if (D % 8 == 0 && nv <= 8) hb = hb < 8 / nv ? hb : 8 / nv;
#endif
        const int32_t *ub = u + g0 * L;
        int64_t n = 0;
        for (int64_t j = 0; j < L; j++) {
            int32_t any = 0;
            for (int64_t g = 0; g < hb; g++) any |= ub[g * L + j];
            idx[n] = (int32_t)j;
            n += any != 0;
        }
        float *ab = acc + g0 * D;
#if defined(__AVX512F__)
        if (D % 16 == 0 && nv <= 8) {
#define VALUES_TILE(NV, HB) \
    if (nv == NV && hb == HB) { values_tile(NV, HB, ub, L, v, D, idx, n, ab); g0 += hb; continue; }
            VALUES_TILE(4, 4) VALUES_TILE(4, 3) VALUES_TILE(4, 2) VALUES_TILE(4, 1)
            VALUES_TILE(8, 2) VALUES_TILE(8, 1) VALUES_TILE(2, 8) VALUES_TILE(1, 16)
#undef VALUES_TILE
        }
#elif defined(__AVX2__)
        if (D % 8 == 0 && nv <= 8) {
#define VALUES_TILE8(NV, HB) \
    if (nv == NV && hb == HB) { values_tile8(NV, HB, ub, L, v, D, idx, n, ab); g0 += hb; continue; }
            VALUES_TILE8(8, 1) VALUES_TILE8(4, 2) VALUES_TILE8(4, 1) VALUES_TILE8(2, 4) VALUES_TILE8(2, 3)
            VALUES_TILE8(2, 2) VALUES_TILE8(2, 1) VALUES_TILE8(1, 8)
#undef VALUES_TILE8
        }
#endif
        for (int64_t g = 0; g < hb; g++) {
            float *a = ab + g * D;
            for (int64_t d = 0; d < D; d++) a[d] = 0.0f;
            for (int64_t i = 0; i < n; i++) {
                const float w = (float)ub[g * L + idx[i]];
                const int8_t *vr = v + (int64_t)idx[i] * D;
                for (int64_t d = 0; d < D; d++) a[d] = a[d] + w * (float)vr[d];
            }
        }
        g0 += hb;
    }
}

/* Per-thread scratch of the attention loops, for G heads over L keys of D values. */
typedef struct {
    int32_t *dots, *u, *idx;
    float *e, *acc, *hide;
} scratch_t;

static scratch_t scratch_new(int64_t G, int64_t L, int64_t D) {
    scratch_t s = {malloc(sizeof(int32_t) * (size_t)(G * L)), malloc(sizeof(int32_t) * (size_t)(G * L)),
                   malloc(sizeof(int32_t) * (size_t)L),       malloc(sizeof(float) * (size_t)L),
                   malloc(sizeof(float) * (size_t)(G * D)),   malloc(sizeof(float) * (size_t)L)};
    return s;
}

static void scratch_free(scratch_t *s) {
    free(s->dots);
    free(s->u);
    free(s->idx);
    free(s->e);
    free(s->acc);
    free(s->hide);
}

/* One query position's G heads (q_g = q + g * q_stride, scale qsc[g * qsc_stride]) against
 * one KV head's L keys, with s->hide already holding the position's visible keys:
 * out [G * D]. The body both attend loops share. */
static void attend_unit(const scratch_t *s, int64_t G, int64_t L, int64_t D, int64_t bits, const poly_t *c,
                        float mass_const, const int8_t *q, int64_t q_stride, const float *qsc, int64_t qsc_stride,
                        const int8_t *k, const float *ks, const int8_t *v, const float *vs, float vm, float *out) {
    dot_rows(q, q_stride, G, k, L, D, s->dots);
    for (int64_t g = 0; g < G; g++)
        row_weights(s->dots + g * L, L, qsc[g * qsc_stride], s->hide, ks, vs, vm, (int32_t)bits, c, mass_const, s->e,
                    s->u + g * L);
    weighted_values(s->u, G, L, v, D, s->idx, s->acc);
    const float unit = vm / mass_const;
    for (int64_t d = 0; d < G * D; d++) out[d] = s->acc[d] * unit;
}

/*
 * Attention for every query of B * KVH * T (sequence, KV head, position) units, as
 * ExactLlama._attend: for each of the unit's G query heads q.k with VNNI dot products and
 * the weights, then u.v for the G heads together. Threads share the units (OpenMP, where
 * built with it). Shapes (contiguous): q [B, KVH, R, D] int8 with R = G * T rows ordered
 * (g, t); qsc [B, KVH, R] = query scale * log2(e) / sqrt(D); qpos [B, T]; vmax [B, KVH, T];
 * k, v [B, KVH, LS, D] int8; ks, vs [B, KVH, LS]; kpos [B, LS], of which the first L keys
 * are attended (LS >= L: a ring cache only partly filled); out [B, T, KVH * G * D].
 */
void attend(int64_t B, int64_t KVH, int64_t G, int64_t T, int64_t L, int64_t LS, int64_t D, int64_t window,
            int64_t bits, const float *coef, float mass_const, const int8_t *q, const float *qsc, const int64_t *qpos,
            const float *vmax, const int8_t *k, const float *ks, const int8_t *v, const float *vs,
            const int64_t *kpos, float *out) {
    const poly_t c = {coef[0], coef[1], coef[2], coef[3]};
    const int64_t R = G * T;
#pragma omp parallel
    {
        scratch_t s = scratch_new(G, L, D);
        int64_t hidden_for = -1; /* the (b, t) that hide holds: one step's KV heads share it */
#pragma omp for schedule(static)
        for (int64_t i = 0; i < B * KVH * T; i++) {
            const int64_t task = i / T, t = i % T, b = task / KVH, h = task % KVH;
            if (b * T + t != hidden_for) {
                hide_keys(kpos + b * LS, L, qpos[b * T + t], window, s.hide);
                hidden_for = b * T + t;
            }
            attend_unit(&s, G, L, D, bits, &c, mass_const, q + (task * R + t) * D, T * D, qsc + task * R + t, T,
                        k + task * LS * D, ks + task * LS, v + task * LS * D, vs + task * LS, vmax[task * T + t],
                        out + ((b * T + t) * KVH + h) * G * D);
        }
        scratch_free(&s);
    }
}

/*
 * attend with one query position per row for M rows, row r reading the cache of
 * sequence slots[r] (the decoding step, several rows per sequence when proposals are
 * verified: step.c step_rows). Shapes: q [M, KVH, G, D] int8; qsc [M, KVH, G]; qpos [M];
 * vmax [M, KVH]; k, v [B, KVH, LS, D] int8; ks, vs [B, KVH, LS]; kpos [B, LS], of which
 * the first L keys are attended; out [M, KVH * G * D]. The same integers per row as attend.
 */
void attend_rows(int64_t M, int64_t KVH, int64_t G, int64_t L, int64_t LS, int64_t D, int64_t window, int64_t bits,
                 const float *coef, float mass_const, const int8_t *q, const float *qsc, const int64_t *qpos,
                 const int64_t *slots, const float *vmax, const int8_t *k, const float *ks, const int8_t *v,
                 const float *vs, const int64_t *kpos, float *out) {
    const poly_t c = {coef[0], coef[1], coef[2], coef[3]};
#pragma omp parallel
    {
        scratch_t s = scratch_new(G, L, D);
        int64_t hidden_for = -1; /* the row that hide holds: its KV heads share it */
#pragma omp for schedule(static)
        for (int64_t i = 0; i < M * KVH; i++) {
            const int64_t r = i / KVH, h = i % KVH, kv = slots[r] * KVH + h;
            if (r != hidden_for) {
                hide_keys(kpos + slots[r] * LS, L, qpos[r], window, s.hide);
                hidden_for = r;
            }
            attend_unit(&s, G, L, D, bits, &c, mass_const, q + i * G * D, D, qsc + i * G, 1, k + kv * LS * D,
                        ks + kv * LS, v + kv * LS * D, vs + kv * LS, vmax[i], out + i * G * D);
        }
        scratch_free(&s);
    }
}

/*
 * The extend path: attention weights for one (sequence, kv head) from exact integer
 * scores; the products q.k and u.v run as int8 GEMMs (torch._int_mm) around it.
 * scores [R, L] int32 with R = G * T rows ordered (g, t); qsc [R]; qpos, vmax [T];
 * ks, vs, kpos [L]. u < 2**17 is written as two base-128 digits of its low 14 bits,
 * digits [2, R, L] int8 (least significant first), and its high part u >> 14 (1..7)
 * sparsely: sum u < 2**17 leaves at most 7 keys per row with u >= 2**14, listed in
 * top [R, TOP] as key * 8 + (u >> 14), 0 for an empty entry. (A third dense digit
 * would cost a third more of the u.v product for a row of zeros.)
 */
enum { TOP = 8 };
void weights(int64_t G, int64_t T, int64_t L, int64_t window, int64_t bits,
             const float *coef, float mass_const, const int32_t *scores, const float *qsc,
             const int64_t *qpos, const float *vmax, const float *ks, const float *vs,
             const int64_t *kpos, int8_t *digits, int32_t *top) {
    const poly_t c = {coef[0], coef[1], coef[2], coef[3]};
    const int64_t R = G * T;
#pragma omp parallel
    {
        float *e = malloc(sizeof(float) * (size_t)L);
        int32_t *u = malloc(sizeof(int32_t) * (size_t)L);
        float *hide = malloc(sizeof(float) * (size_t)L);
        int64_t hidden_for = -1; /* the t that hide holds */
        /* visited in (t, g) order, so the G heads of one query position share hide */
#pragma omp for schedule(static)
        for (int64_t i = 0; i < R; i++) {
            const int64_t t = i / G, r = (i % G) * T + t;
            if (t != hidden_for) {
                hide_keys(kpos, L, qpos[t], window, hide);
                hidden_for = t;
            }
            if (i + 1 < R) { /* the next row's scores, while this one is worked on: they come from L3 */
                const int32_t *next = scores + (((i + 1) % G) * T + (i + 1) / G) * L;
                for (int64_t j = 0; j < L; j += 16) __builtin_prefetch(next + j);
            }
            row_weights(scores + r * L, L, qsc[r], hide, ks, vs, vmax[t], (int32_t)bits, &c, mass_const, e, u);
            int8_t *d0 = digits + r * L, *d1 = digits + (R + r) * L;
            int32_t high = 0;
            for (int64_t j = 0; j < L; j++) {
                d0[j] = (int8_t)(u[j] & 127);
                d1[j] = (int8_t)((u[j] >> 7) & 127);
                high |= u[j] >> 14;
            }
            int32_t *tr = top + r * TOP;
            for (int n = 0; n < TOP; n++) tr[n] = 0;
            if (high) { /* most rows have one: the sink often takes much of the weight */
                int n = 0;
                int64_t j = 0;
#if defined(__AVX512F__)
                const __m512i limit = _mm512_set1_epi32((1 << 14) - 1);
                for (; j + 16 <= L && n < TOP; j += 16)
                    for (__mmask16 m = _mm512_cmpgt_epi32_mask(_mm512_loadu_si512(u + j), limit); m && n < TOP;
                         m &= (__mmask16)(m - 1)) {
                        const int64_t k = j + __builtin_ctz(m);
                        tr[n++] = (int32_t)(k * 8 + (u[k] >> 14));
                    }
#endif
                for (; j < L && n < TOP; j++)
                    if (u[j] >> 14) tr[n++] = (int32_t)(j * 8 + (u[j] >> 14));
            }
        }
        free(e);
        free(u);
        free(hide);
    }
}

/* After u.v: acc [2, R, D] int32, the products of u's two low digits with v, rows
 * ordered (g, t); top and v [L, D] as above. out[t * stride + g * D + d] = (acc1 * 128 +
 * acc0 + sum over top (u >> 14) * 2**14 * v[key]) (exact integers) times vmax[t] / mass_const. */
void weighted_sum(int64_t G, int64_t T, int64_t D, const int32_t *acc, const int32_t *top, const int8_t *v,
                  const float *vmax, float mass_const, float *out, int64_t stride) {
    const int64_t R = G * T;
    int32_t *sum = malloc(sizeof(int32_t) * (size_t)D);
    for (int64_t r = 0; r < R; r++) {
        const int64_t g = r / T, t = r % T;
        const float unit = vmax[t] / mass_const;
        const int32_t *a0 = acc + r * D, *a1 = acc + (R + r) * D;
        for (int64_t d = 0; d < D; d++) sum[d] = a1[d] * 128 + a0[d];
        for (int n = 0; n < TOP && top[r * TOP + n]; n++) {
            const int32_t w = (top[r * TOP + n] & 7) << 14;
            const int8_t *vr = v + (int64_t)(top[r * TOP + n] >> 3) * D;
            for (int64_t d = 0; d < D; d++) sum[d] += w * (int32_t)vr[d];
        }
        float *o = out + t * stride + g * D;
        for (int64_t d = 0; d < D; d++) o[d] = (float)sum[d] * unit;
    }
    free(sum);
}

/*
 * Frequencies (frequencies.Frequencies) for rows of logits, without building the tables: with
 * e_v = round(2**24 * 2**-((max - l_v) * log2 e)) and E(v) = sum of e below v, token v's
 * cumulative frequency is CF(v) = floor(E(v) * R / 2**38) + v, R = floor((2**24 - V) *
 * 2**38 / E(V)), and CF(V) = 2**24. e is scratch for V floats.
 */
static int64_t row_exp(const float *logits, int64_t V, float log2e, const poly_t *c, float *e) {
    float peak = -INFINITY; /* the max is exact in any order: 16 lanes at a time where built */
    int64_t v = 0;
#if defined(__AVX512F__)
    __m512 top = _mm512_set1_ps(-INFINITY);
    for (; v + 16 <= V; v += 16) top = _mm512_max_ps(top, _mm512_loadu_ps(logits + v));
    peak = _mm512_reduce_max_ps(top);
#endif
    for (; v < V; v++) peak = logits[v] > peak ? logits[v] : peak;
    int64_t mass = 0; /* integers <= 2**24: exact in any order */
    for (v = 0; v < V; v++) {
        e[v] = exp2_neg_scaled((peak - logits[v]) * log2e, 24, c);
        mass += (int64_t)e[v];
    }
    return mass;
}

static inline int64_t cumulative(int64_t E, int64_t v, int64_t recip) { return ((E * recip) >> 38) + v; }

/* mode 0 (coding): for tokens[r], low = CF(t), freq = CF(t + 1) - CF(t).
 * mode 1 (decoding): tokens[r] = the t with CF(t) <= targets[r] < CF(t + 1), and its low, freq. */
void token_bounds(int64_t M, int64_t V, int64_t mode, const float *coef, float log2e, const float *logits,
                  const int64_t *targets, int64_t *tokens, int64_t *low, int64_t *freq) {
    poly_t c = {coef[0], coef[1], coef[2], coef[3]};
#pragma omp parallel
    {
        float *e = malloc(sizeof(float) * (size_t)V);
#pragma omp for schedule(static)
        for (int64_t r = 0; r < M; r++) {
            const int64_t mass = row_exp(logits + r * V, V, log2e, &c, e);
            const int64_t recip = (((int64_t)1 << 24) - V) * ((int64_t)1 << 38) / mass;
            int64_t t, E = 0;
            if (mode == 0) {
                t = tokens[r];
                for (int64_t v = 0; v < t; v++) E += (int64_t)e[v];
            } else { /* CF is strictly increasing: the first v whose CF(v + 1) passes the target */
                const int64_t target = targets[r];
                for (t = 0; t < V - 1; t++) {
                    const int64_t next = E + (int64_t)e[t];
                    if (cumulative(next, t + 1, recip) > target) break;
                    E = next;
                }
                tokens[r] = t;
            }
            const int64_t lo = cumulative(E, t, recip);
            const int64_t hi = t + 1 == V ? ((int64_t)1 << 24) : cumulative(E + (int64_t)e[t], t + 1, recip);
            low[r] = lo;
            freq[r] = hi - lo;
        }
        free(e);
    }
}

/*
 * Decoding with file-wide memory (lmzip/memory.py): the model's table scaled to
 * spread[r] = S and a few candidate tokens boosted. For row r, cand_tok/cand_boost
 * [cand_start[r], cand_start[r + 1]) are its candidates, sorted by token:
 *   cum_mix(t) = floor(CF(t) * S / 2**24) + t + (boosts of candidates below t)
 * tokens[r] = the t with cum_mix(t) <= targets[r] < cum_mix(t + 1); low/freq its mixed
 * interval, lm_freq its model frequency f(t).
 */
void mixed_find(int64_t M, int64_t V, const float *coef, float log2e, const float *logits, const int64_t *targets,
                const int64_t *spread, const int64_t *cand_start, const int64_t *cand_tok, const int64_t *cand_boost,
                int64_t *tokens, int64_t *low, int64_t *freq, int64_t *lm_freq) {
    poly_t c = {coef[0], coef[1], coef[2], coef[3]};
#pragma omp parallel
    {
        float *e = malloc(sizeof(float) * (size_t)V);
#pragma omp for schedule(static)
        for (int64_t r = 0; r < M; r++) {
            const int64_t mass = row_exp(logits + r * V, V, log2e, &c, e);
            const int64_t recip = (((int64_t)1 << 24) - V) * ((int64_t)1 << 38) / mass;
            const int64_t S = spread[r], target = targets[r], end = cand_start[r + 1];
            int64_t ci = cand_start[r], E = 0, extra = 0, cf = 0, t, cf_next = 0, b = 0;
            for (t = 0; t < V; t++) {
                const int64_t next = E + (int64_t)e[t];
                cf_next = t + 1 == V ? ((int64_t)1 << 24) : cumulative(next, t + 1, recip);
                const int hit = ci < end && cand_tok[ci] == t;
                b = hit ? cand_boost[ci] : 0;
                if (((cf_next * S) >> 24) + t + 1 + extra + b > target || t + 1 == V) break;
                E = next;
                cf = cf_next;
                extra += b;
                ci += hit;
            }
            tokens[r] = t;
            low[r] = ((cf * S) >> 24) + t + extra;
            freq[r] = ((cf_next * S) >> 24) - ((cf * S) >> 24) + 1 + b;
            lm_freq[r] = cf_next - cf;
        }
        free(e);
    }
}
