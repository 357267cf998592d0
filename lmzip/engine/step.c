/* One decoding step of ExactLlama in C: the integers of model.py's step path, fast.
 *
 * Decoding advances a handful of sequences by one token; in eager PyTorch that is ~70
 * small operator calls per layer, each costing more in dispatch than in arithmetic.
 * Here a whole step (embedding, 30 layers, final norm, output head) is one call. Every
 * float operation is the same correctly rounded IEEE operation, in the same order, as
 * the reference (built with -ffp-contract=off, no -ffast-math); the matrix products are
 * exact int8 x int8 -> int32 sums. tests/test_kernels.py checks step == reference.
 *
 * Linear layers use weights packed for AVX-512 VNNI (16 output channels x 4 inputs per
 * 64-byte vector, see kernels.py pack_linear), 16-bit products on CPUs with AVX2 only,
 * and a plain C loop elsewhere. Threads:
 * OpenMP, the runtime torch already loaded (same libgomp soname), when built with it.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

/* Where a step's time goes, in builds with -DLMZIP_PROFILE only (scripts/step_profile.py;
 * kernels.STEP_PHASES names them in this order): seconds per phase summed over the
 * step_rows calls since the last step_profile(). Each mark charges the time since the
 * previous mark to one phase, so the phases add up to the whole step. Other builds
 * compile the marks away. */
enum {
    PHASE_QKV, PHASE_O, PHASE_GATE_UP, PHASE_DOWN, PHASE_HEAD, /* the int8 products */
    PHASE_SCALE,                                               /* products -> float (combine_row) */
    PHASE_NORM,                                                /* RMSNorm + quantization */
    PHASE_QKV_ROWS,                                            /* RoPE, q/k/v quantization, cache writes */
    PHASE_ATTEND,
    PHASE_O_ROWS,                                              /* attention output quantization */
    PHASE_SILU,                                                /* silu(gate) * up + quantization */
    PHASE_OTHER,                                               /* embedding, residual adds, buffers */
    PHASES
};
#if defined(LMZIP_PROFILE)
#include <time.h>
static double phase_seconds[PHASES];
static int64_t profiled_steps;
static inline double phase_clock(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
static inline void phase_mark(int phase, double *since) {
    const double now = phase_clock();
    phase_seconds[phase] += now - *since;
    *since = now;
}
#else
static inline double phase_clock(void) { return 0.0; }
static inline void phase_mark(int phase, double *since) { (void)phase, (void)since; }
#endif

/* Copies the phases' seconds into seconds[PHASES] and starts again; returns the number
 * of step_rows calls they cover, or -1 in a build without LMZIP_PROFILE. */
int64_t step_profile(double *seconds) {
#if defined(LMZIP_PROFILE)
    const int64_t steps = profiled_steps;
    for (int i = 0; i < PHASES; i++) {
        seconds[i] = phase_seconds[i];
        phase_seconds[i] = 0.0;
    }
    profiled_steps = 0;
    return steps;
#else
    (void)seconds;
    return -1;
#endif
}

int step_profile_phases(void) { return PHASES; }

void attend_rows(int64_t M, int64_t KVH, int64_t G, int64_t L, int64_t LS, int64_t D, int64_t window, int64_t bits,
                 const float *coef, float mass_const, const int8_t *q, const float *qsc, const int64_t *qpos,
                 const int64_t *slots, const float *vmax, const int8_t *k, const float *ks, const int8_t *v,
                 const float *vs, const int64_t *kpos, float *out);

typedef struct {
    const int8_t *packed; /* [N16 / 16][K / 4][16][4]: output channels padded to N16 */
    const int32_t *wsum;  /* [N16] sum of each channel's weights (for the unsigned-input trick) */
    const float *scale;   /* [N] per output channel */
    const float *bias;    /* [N] or NULL */
    int64_t n, k, split;  /* split: 15-bit activations as two int8 halves (model.SPLIT) */
} qlinear_t;

typedef struct {
    const float *attn_norm, *mlp_norm;
    qlinear_t qkv, o, gate_up, down;
    int8_t *k, *v;          /* cache [B, KVH, ring, D] */
    float *ks, *vs, *vmax;  /* [B, KVH, ring], [B, KVH, ring], [B, KVH] */
} layer_t;

typedef struct {
    int64_t hidden, heads, kv_heads, head_dim, inter, vocab, layers, window, exp_bits, batch;
    int64_t ring;                    /* cache entries per sequence: window + slack (speculative rows) */
    double eps;
    float score_unit, attn_mass, sigmoid_steps;
    int64_t sigmoid_offset;
    const float *exp_coef, *sigmoid; /* 4 coefficients; 2 * offset + 1 table entries */
    const int8_t *emb;               /* [V, H] */
    const float *emb_scale, *final_norm, *cos, *sin; /* rope tables [P, D / 2] */
    qlinear_t head;
    int64_t *pos;                    /* [B, ring] */
    layer_t *layer;
} model_t;

/* ---- activations ---------------------------------------------------------- */

/* Quantized rows for a linear layer with K inputs: x ~= (256 * hi + lo) * scale, or
 * hi * scale without the split. Bytes are stored unsigned (x ^ 0x80, the input side of
 * vpdpbusd), in one block [2M, K]: the M hi rows, then the M lo rows, so that one pass
 * over the weights serves both halves. */
typedef struct {
    uint8_t *q;   /* [2M, K] */
    float *scale; /* [M] */
    int64_t m;
} act_t;

static inline uint8_t *hi_row(const act_t *a, int64_t b, int64_t K) { return a->q + b * K; }
static inline uint8_t *lo_row(const act_t *a, int64_t b, int64_t K) { return a->q + (a->m + b) * K; }

/* max |x|, 1 for a row of zeros. The maximum is exact in any order (no NaN here), so
 * the AVX-512 path takes 16 lanes at a time; the compiler would not (NaN semantics). */
static inline float row_amax(const float *x, int64_t n) {
    float m = 0.0f;
    int64_t i = 0;
#if defined(__AVX512F__)
    __m512 top = _mm512_setzero_ps();
    for (; i + 16 <= n; i += 16) top = _mm512_max_ps(top, _mm512_abs_ps(_mm512_loadu_ps(x + i)));
    m = _mm512_reduce_max_ps(top);
#endif
    for (; i < n; i++) {
        const float a = fabsf(x[i]);
        m = a > m ? a : m;
    }
    return m > 0.0f ? m : 1.0f;
}

/* model.quantize_activation for one row of n values; bytes stored as q ^ flip (flip 0x80
 * for vpdpbusd's unsigned side, 0 for torch._int_mm's int8). */
static void quantize_row(const float *x, int64_t n, int split, uint8_t flip, uint8_t *hi, uint8_t *lo, float *scale) {
    const float amax = row_amax(x, n);
    const float full = split ? 127.0f * 256.0f : 127.0f;
    const float r = full / amax;
    *scale = amax / full;
    for (int64_t i = 0; i < n; i++) {
        float q = rintf(x[i] * r);
        if (!split) {
            q = q < -127.0f ? -127.0f : (q > 127.0f ? 127.0f : q);
            hi[i] = (uint8_t)((int8_t)q) ^ flip;
            continue;
        }
        const float h = rintf(q * (1.0f / 256.0f));
        float l = q - h * 256.0f;
        l = l < -128.0f ? -128.0f : (l > 127.0f ? 127.0f : l);
        hi[i] = (uint8_t)((int8_t)h) ^ flip;
        lo[i] = (uint8_t)((int8_t)l) ^ flip;
    }
}

/* model.rms_norm_quantized for one row: RMSNorm(x) * w, quantized, the 1 / rms folded
 * into the scale. tmp holds n floats. */
static void rms_quantize_row(const float *x, const float *w, int64_t n, double eps, int split, uint8_t flip,
                             float *tmp, uint8_t *hi, uint8_t *lo, float *scale) {
    const float amax = row_amax(x, n);
    const float r = 32767.0f / amax;
    double sum = 0.0; /* squares of integers < 2**15: the sum is exact in any order */
    int64_t i = 0;
#if defined(__AVX512F__)
    __m512d lanes = _mm512_setzero_pd();
    const __m512 rv = _mm512_set1_ps(r);
    for (; i + 16 <= n; i += 16) {
        const __m512 f = _mm512_roundscale_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), rv), _MM_FROUND_TO_NEAREST_INT);
        const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(f));
        const __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(f), 1)));
        lanes = _mm512_add_pd(lanes, _mm512_add_pd(_mm512_mul_pd(lo, lo), _mm512_mul_pd(hi, hi)));
    }
    sum = _mm512_reduce_add_pd(lanes);
#endif
    for (; i < n; i++) {
        const double f = (double)rintf(x[i] * r);
        sum += f * f;
    }
    const double mean_sq = sum / (double)n;
    const double unit = (double)amax / 32767.0;
    const double rms = sqrt(mean_sq + eps / (unit * unit)) * unit;
    for (int64_t i = 0; i < n; i++) tmp[i] = x[i] * w[i];
    float s;
    quantize_row(tmp, n, split, flip, hi, lo, &s);
    *scale = (float)((double)s / rms);
}

/* model.silu_times for one row: silu(gate) * up with the sigmoid table, then two products. */
static void silu_row(const float *gate, const float *up, int64_t n, const float *table, float steps, int64_t offset,
                     float *out) {
    for (int64_t i = 0; i < n; i++) {
        float idx = rintf(gate[i] * steps) + (float)offset;
        idx = idx < 0.0f ? 0.0f : (idx > (float)(2 * offset) ? (float)(2 * offset) : idx);
        out[i] = (table[(int64_t)idx] * gate[i]) * up[i];
    }
}

/* model.linear after the integer product, for one row: (256 * hi + lo) * x scale * w scale (+ bias). */
static void combine_row(const int32_t *hi, const int32_t *lo, int64_t n, float xs, const float *ws, const float *bias,
                        float *out) {
    for (int64_t i = 0; i < n; i++) {
        float v = (float)hi[i];
        if (lo) v = v * 256.0f + (float)lo[i];
        v = (v * xs) * ws[i];
        out[i] = bias ? v + bias[i] : v;
    }
}

/* ---- linear layers ---------------------------------------------------------- */

/* acc [M, N16] = x . W^T for unsigned-shifted x [M, K]: sum (x + 128) w - 128 sum w.
 * With VNNI, a register tile of NB blocks of 16 channels x up to MB rows: each weight
 * vector loaded once serves MB rows, each broadcast input serves NB blocks. */
#if defined(__AVX512F__) && defined(__AVX512VNNI__)
enum { MB = 12, PREFETCH = 32 }; /* rows per tile; weight vectors fetched ahead */
static inline __attribute__((always_inline)) void tile(int nb, const qlinear_t *l, int64_t b, int64_t m0, int64_t mm,
                                                        const uint8_t *x, int32_t *acc, int64_t N16) {
    const int64_t K = l->k, groups = K / 4;
    const int8_t *w0 = l->packed + b * groups * 64, *w1 = w0 + groups * 64;
    __m512i a0[MB], a1[MB];
    for (int i = 0; i < MB; i++) a0[i] = a1[i] = _mm512_setzero_si512();
    for (int64_t g = 0; g < groups; g++) {
        _mm_prefetch((const char *)(w0 + (g + PREFETCH) * 64), _MM_HINT_T0); /* weights stream from memory */
        if (nb == 2) _mm_prefetch((const char *)(w1 + (g + PREFETCH) * 64), _MM_HINT_T0);
        const __m512i v0 = _mm512_loadu_si512(w0 + g * 64);
        const __m512i v1 = nb == 2 ? _mm512_loadu_si512(w1 + g * 64) : v0;
        for (int i = 0; i < MB; i++) {
            if (i < mm) {
                int32_t four;
                memcpy(&four, x + (m0 + i) * K + 4 * g, 4);
                const __m512i xi = _mm512_set1_epi32(four);
                a0[i] = _mm512_dpbusd_epi32(a0[i], xi, v0);
                if (nb == 2) a1[i] = _mm512_dpbusd_epi32(a1[i], xi, v1);
            }
        }
    }
    const __m512i c0 = _mm512_slli_epi32(_mm512_loadu_si512(l->wsum + b * 16), 7);
    const __m512i c1 = nb == 2 ? _mm512_slli_epi32(_mm512_loadu_si512(l->wsum + b * 16 + 16), 7) : c0;
    for (int i = 0; i < mm; i++) {
        _mm512_storeu_si512(acc + (m0 + i) * N16 + b * 16, _mm512_sub_epi32(a0[i], c0));
        if (nb == 2) _mm512_storeu_si512(acc + (m0 + i) * N16 + b * 16 + 16, _mm512_sub_epi32(a1[i], c1));
    }
}
#endif

/* AVX2 without AVX-512 (e.g. AMD Zen 2 and 3): the same sums from 16-bit products.
 * vpmaddubsw would saturate (255 * 127 * 2 > 2**15), so inputs and weights are widened
 * to int16 and vpmaddwd adds pairs into exact int32 lanes (|x w| <= 255 * 128). A group
 * of 4 inputs x 16 channels (64 weight bytes) is four vectors of 4 channels x 4 inputs;
 * each lane pair holds one channel's two half sums, added at the end. A tile is
 * MB2 rows x one 16-channel block: the widened weights serve both rows. */
#if defined(__AVX2__) && !(defined(__AVX512F__) && defined(__AVX512VNNI__))
enum { MB2 = 2 };
static inline __attribute__((always_inline)) void tile_avx2(const qlinear_t *l, int64_t b, int64_t m0, int64_t mm,
                                                             const int16_t *x16, int32_t *acc, int64_t N16) {
    const int64_t K = l->k, groups = K / 4;
    const int8_t *w = l->packed + b * groups * 64;
    __m256i a[MB2][4];
    for (int i = 0; i < MB2; i++)
        for (int c = 0; c < 4; c++) a[i][c] = _mm256_setzero_si256();
    for (int64_t g = 0; g < groups; g++) {
        __m256i wv[4];
        for (int c = 0; c < 4; c++) wv[c] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + g * 64 + 16 * c)));
        for (int i = 0; i < MB2; i++) {
            if (i < mm) {
                int64_t four;
                memcpy(&four, x16 + (m0 + i) * K + 4 * g, 8);
                const __m256i xi = _mm256_set1_epi64x(four);
                for (int c = 0; c < 4; c++) a[i][c] = _mm256_add_epi32(a[i][c], _mm256_madd_epi16(wv[c], xi));
            }
        }
    }
    /* lanes (2j, 2j + 1) of a[i][c] are channel 4c + j's halves: hadd, then undo its lane order */
    const __m256i c0 = _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)(l->wsum + b * 16)), 7);
    const __m256i c1 = _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)(l->wsum + b * 16 + 8)), 7);
    for (int i = 0; i < mm; i++) {
        const __m256i lo = _mm256_permute4x64_epi64(_mm256_hadd_epi32(a[i][0], a[i][1]), 0xD8);
        const __m256i hi = _mm256_permute4x64_epi64(_mm256_hadd_epi32(a[i][2], a[i][3]), 0xD8);
        _mm256_storeu_si256((__m256i *)(acc + (m0 + i) * N16 + b * 16), _mm256_sub_epi32(lo, c0));
        _mm256_storeu_si256((__m256i *)(acc + (m0 + i) * N16 + b * 16 + 8), _mm256_sub_epi32(hi, c1));
    }
}
#endif

/* AMX (Sapphire Rapids and later): the same products on tiles. TDPBUSD multiplies
 * unsigned bytes by signed bytes into exact int32 sums, as vpdpbusd does, and the packed
 * layout above is already a B tile: 16 rows of K/4 groups x 64 bytes (16 channels x 4
 * inputs) per 64 inputs of one 16-channel block. So every path gives the same integers;
 * AMX only does more of them per cycle, which pays once a step has a few rows.
 * Tiles: 0-3 accumulators (2 row tiles x 2 channel blocks), 4-5 inputs, 6-7 weights. */
#if defined(__AMX_INT8__) && defined(__AMX_TILE__) && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#define LMZIP_AMX 1
enum { AMX_MIN_ROWS = 4 }; /* below it a step streams the weights either way: not measured, scripts/amx_speed.py compares */
static int amx_on = 0;
static int64_t amx_products = 0; /* products run on tiles (tests check that the path ran) */

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config_t;

static void amx_configure(int rows0, int rows1) {
    tile_config_t c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    const int rows[8] = {rows0, rows0, rows1, rows1, rows0, rows1, 16, 16};
    for (int t = 0; t < 8; t++)
        if (rows[t]) {
            c.rows[t] = (uint8_t)rows[t];
            c.colsb[t] = 64;
        }
    _tile_loadconfig(&c);
}

/* Rows are taken AMX_ROW_BLOCK at a time, every channel pair for each block: a block's
 * inputs (at most 256 x K bytes) stay in L2 while all the weights pass, where a pass of
 * all M rows per channel pair re-read the inputs from further out for every pair (a
 * scoring product of 2048 rows x 576 inputs x 3072 channels: 3.3 ms, as slow as
 * torch._int_mm, before the blocks; 2.6-2.9 ms with them; scripts/amx_speed.py --scoring).
 * Decoding steps have fewer rows than a block: for them nothing changes. */
enum { AMX_ROW_BLOCK = 256 };
static void amx_matmul(const qlinear_t *l, int64_t M, const uint8_t *x, int32_t *acc) {
    const int64_t blocks = (l->n + 15) / 16, N16 = blocks * 16, K = l->k, groups = K / 4;
    const int64_t pairs = (blocks + 1) / 2;
#pragma omp parallel
    {
        int rows0 = -1, rows1 = -1;
        for (int64_t mb = 0; mb < M; mb += AMX_ROW_BLOCK) {
            const int64_t mend = M - mb < AMX_ROW_BLOCK ? M : mb + AMX_ROW_BLOCK;
#pragma omp for schedule(static)
            for (int64_t pr = 0; pr < pairs; pr++) {
                const int64_t b = 2 * pr;
                const int two = b + 1 < blocks;
                const int8_t *w0 = l->packed + b * groups * 64, *w1 = w0 + groups * 64;
                for (int64_t m0 = mb; m0 < mend; m0 += 32) {
                    const int r0 = mend - m0 < 16 ? (int)(mend - m0) : 16;
                    const int r1 = mend - m0 - 16 <= 0 ? 0 : (mend - m0 - 16 < 16 ? (int)(mend - m0 - 16) : 16);
                    if (r0 != rows0 || r1 != rows1) {
                        amx_configure(r0, r1);
                        rows0 = r0;
                        rows1 = r1;
                    }
                    _tile_zero(0);
                    if (two) _tile_zero(1);
                    if (r1) {
                        _tile_zero(2);
                        if (two) _tile_zero(3);
                    }
                    for (int64_t k0 = 0; k0 < K; k0 += 64) {
                        _tile_loadd(4, x + m0 * K + k0, K);
                        _tile_loadd(6, w0 + k0 * 16, 64);
                        _tile_dpbusd(0, 4, 6);
                        if (r1) {
                            _tile_loadd(5, x + (m0 + 16) * K + k0, K);
                            _tile_dpbusd(2, 5, 6);
                        }
                        if (two) {
                            _tile_loadd(7, w1 + k0 * 16, 64);
                            _tile_dpbusd(1, 4, 7);
                            if (r1) _tile_dpbusd(3, 5, 7);
                        }
                    }
                    int32_t *c = acc + m0 * N16 + b * 16;
                    _tile_stored(0, c, N16 * 4);
                    if (two) _tile_stored(1, c + 16, N16 * 4);
                    if (r1) {
                        _tile_stored(2, c + 16 * N16, N16 * 4);
                        if (two) _tile_stored(3, c + 16 * N16 + 16, N16 * 4);
                    }
                    const __m512i c0 = _mm512_slli_epi32(_mm512_loadu_si512(l->wsum + b * 16), 7);
                    const __m512i c1 = two ? _mm512_slli_epi32(_mm512_loadu_si512(l->wsum + b * 16 + 16), 7) : c0;
                    for (int i = 0; i < r0 + r1; i++) {
                        int32_t *row = c + i * N16;
                        _mm512_storeu_si512(row, _mm512_sub_epi32(_mm512_loadu_si512(row), c0));
                        if (two) _mm512_storeu_si512(row + 16, _mm512_sub_epi32(_mm512_loadu_si512(row + 16), c1));
                    }
                }
            }
        }
        if (rows0 >= 0) _tile_release();
    }
}
#endif

/* Use AMX tiles for products of AMX_MIN_ROWS rows or more where this build and CPU have
 * them and the kernel grants the tile state (Linux asks each process to request it).
 * Returns whether AMX is now in use; want = 0 turns it off (tests compare both paths). */
int set_amx(int want) {
#if defined(LMZIP_AMX)
    if (want && !amx_on) {
        enum { ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };
        amx_on = syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
    } else if (!want) {
        amx_on = 0;
    }
    return amx_on;
#else
    (void)want;
    return 0;
#endif
}

static void int_matmul(const qlinear_t *l, int64_t M, const uint8_t *x, int32_t *acc) {
    const int64_t blocks = (l->n + 15) / 16, N16 = blocks * 16;
#if defined(LMZIP_AMX)
    if (amx_on && M >= AMX_MIN_ROWS && l->k % 64 == 0) {
        amx_matmul(l, M, x, acc);
        amx_products++;
        return;
    }
#endif
#if defined(__AVX512F__) && defined(__AVX512VNNI__)
    const int64_t pairs = (blocks + 1) / 2;
#pragma omp parallel for schedule(static)
    for (int64_t pr = 0; pr < pairs; pr++) {
        const int64_t b = 2 * pr;
        for (int64_t m0 = 0; m0 < M; m0 += MB) {
            const int64_t mm = M - m0 < MB ? M - m0 : MB;
            if (b + 1 < blocks)
                tile(2, l, b, m0, mm, x, acc, N16);
            else
                tile(1, l, b, m0, mm, x, acc, N16);
        }
    }
#elif defined(__AVX2__)
    const int64_t K = l->k;
    int16_t *x16 = malloc(sizeof(int16_t) * (size_t)(M * K)); /* the inputs widened once, not per block */
    for (int64_t i = 0; i < M * K; i++) x16[i] = x[i];
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < blocks; b++)
        for (int64_t m0 = 0; m0 < M; m0 += MB2) tile_avx2(l, b, m0, M - m0 < MB2 ? M - m0 : MB2, x16, acc, N16);
    free(x16);
#else
    const int64_t K = l->k, groups = K / 4;
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < blocks; b++) {
        const int8_t *w = l->packed + b * groups * 64;
        for (int64_t m = 0; m < M; m++) {
            int32_t a[16] = {0};
            for (int64_t g = 0; g < groups; g++)
                for (int c = 0; c < 16; c++)
                    for (int e = 0; e < 4; e++) a[c] += (int32_t)x[m * K + 4 * g + e] * w[(g * 16 + c) * 4 + e];
            for (int c = 0; c < 16; c++) acc[m * N16 + b * 16 + c] = a[c] - 128 * l->wsum[b * 16 + c];
        }
    }
#endif
}

/* Which unit this build multiplies on: 0 plain C, 1 AVX2 (16-bit products), 2 AVX-512
 * VNNI (3 with AMX tiles in use). Where it is 1, torch's int8 GEMM is a plain loop too,
 * so scoring's products come here (native_ops.NativeOps.product). */
int product_path(void) {
#if defined(LMZIP_AMX)
    if (amx_on) return 3;
#endif
#if defined(__AVX512F__) && defined(__AVX512VNNI__)
    return 2;
#elif defined(__AVX2__)
    return 1;
#else
    return 0;
#endif
}

/* Whether products of AMX_MIN_ROWS rows or more run on AMX tiles now (set_amx). */
int amx_in_use(void) {
#if defined(LMZIP_AMX)
    return amx_on;
#else
    return 0;
#endif
}

/* How many products ran on AMX tiles so far. */
int64_t amx_product_count(void) {
#if defined(LMZIP_AMX)
    return amx_products;
#else
    return 0;
#endif
}

/* int_matmul on its own, for tests that compare its paths (AMX, VNNI, AVX2, plain C). */
void linear_product(const qlinear_t *l, int64_t M, const uint8_t *x, int32_t *acc) { int_matmul(l, M, x, acc); }

/* model.linear: y [M, N] = x @ W^T (+ bias) as float32. */
static void linear(const qlinear_t *l, const act_t *x, int32_t *acc, float *y, int phase, double *since) {
    const int64_t M = x->m;
    const int64_t N = l->n, N16 = (N + 15) / 16 * 16;
    int_matmul(l, l->split ? 2 * M : M, x->q, acc);
    phase_mark(phase, since);
#pragma omp parallel for if (M >= 8)
    for (int64_t m = 0; m < M; m++)
        combine_row(acc + m * N16, l->split ? acc + (M + m) * N16 : NULL, N, x->scale[m], l->scale, l->bias, y + m * N);
    phase_mark(PHASE_SCALE, since);
}

/* ---- the step --------------------------------------------------------------- */

static inline int64_t max3(int64_t a, int64_t b, int64_t c) { return a > b ? (a > c ? a : c) : (b > c ? b : c); }

static inline int64_t ring_slot(int64_t p, int64_t window) { return p == 0 ? 0 : 1 + (p - 1) % (window - 1); }

static void rope(float *x, const float *cos, const float *sin, int64_t half) {
    for (int64_t i = 0; i < half; i++) {
        const float e = x[2 * i], o = x[2 * i + 1];
        x[2 * i] = e * cos[i] - o * sin[i];
        x[2 * i + 1] = e * sin[i] + o * cos[i];
    }
}

/* int8 row and its scale, as model.quantize_rows (signed bytes, for the cache and attend). */
static inline void quantize_signed(const float *x, int64_t n, int8_t *q, float *scale) {
    quantize_row(x, n, 0, 0, (uint8_t *)q, NULL, scale);
}

/* RMSNorm + quantization of the B rows of x for the next linear layer (threaded when B is large). */
static void norm_rows(const model_t *m, int64_t M, const float *x, const float *w, int64_t split, float *tmp,
                      int64_t tmp_stride, const act_t *act) {
    const int64_t H = m->hidden;
#pragma omp parallel for if (M >= 8)
    for (int64_t b = 0; b < M; b++)
        rms_quantize_row(x + b * H, w, H, m->eps, (int)split, 0x80, tmp + b * tmp_stride, hi_row(act, b, H),
                         lo_row(act, b, H), act->scale + b);
}

/* Advance M rows: row r appends tokens[r] at positions[r] to cache row slots[r]; hidden
 * [M, H] and, if logits is not NULL, logits [M, V]. The rows of one cache row are
 * consecutive, at consecutive positions (speculative verification: a decoded token and
 * the tokens proposed after it, see engine.py LockstepDecoder). Every row's keys and
 * values are written to the ring before any row attends, and each row sees only keys
 * at positions <= its own, so row r gets exactly the integers of single steps. The ring
 * holds window - 1 + slack recent positions: writing up to slack + 1 new positions
 * never overwrites a key that any row still sees (kernels.c visible()).
 * The running maximum of value scales (the attention bound) is per row: row_vmax
 * [layers, M, KVH], continued from the cache's; the cache's own vmax is left alone
 * until commit_vmax says which row was the last one accepted.
 * Returns 0, or -1 when out of memory. */
int step_rows(const model_t *m, int64_t M, const int64_t *slots, const int64_t *tokens, const int64_t *positions,
              float *hidden, float *logits, float *row_vmax) {
    const int64_t H = m->hidden, NH = m->heads, KVH = m->kv_heads, D = m->head_dim;
    const int64_t G = NH / KVH, W = m->window, RS = m->ring, I = m->inter, half = D / 2;
    const int64_t QKV = (NH + 2 * KVH) * D;
    const int64_t wide_out = max3(QKV, 2 * I, H);                   /* widest layer output (y) */
    const int64_t wide_acc = (max3(wide_out, m->vocab, 0) + 15) / 16 * 16; /* and the head's, in acc */
    const int64_t wide_in = max3(I, H, NH * D);                          /* widest layer input */
    double since = phase_clock();
    int status = -1;
    float *x = hidden;
    float *y = malloc(sizeof(float) * M * wide_out);
    float *tmp = malloc(sizeof(float) * M * wide_in);
    int32_t *acc = malloc(sizeof(int32_t) * 2 * M * wide_acc);
    uint8_t *xq = malloc((size_t)(2 * M * wide_in));
    float *xs = malloc(sizeof(float) * M);
    int8_t *qq = malloc((size_t)(M * NH * D));
    float *qsc = malloc(sizeof(float) * M * NH);
    float *attn = malloc(sizeof(float) * M * NH * D);
    if (!y || !tmp || !acc || !xq || !xs || !qq || !qsc || !attn) goto done;
    act_t act = {xq, xs, M};

    int64_t top = 0;
    for (int64_t r = 0; r < M; r++) {
        const int64_t p = positions[r];
        m->pos[slots[r] * RS + ring_slot(p, RS)] = p; /* written before attending, as the reference */
        top = p > top ? p : top;
    }
    const int64_t n_cached = top + 1 < RS ? top + 1 : RS; /* slots fill in order until the ring wraps */
    for (int64_t r = 0; r < M; r++) {
        const int8_t *e = m->emb + tokens[r] * H;
        const float s = m->emb_scale[tokens[r]];
        for (int64_t i = 0; i < H; i++) x[r * H + i] = (float)e[i] * s;
    }
    phase_mark(PHASE_OTHER, &since);
    for (int64_t li = 0; li < m->layers; li++) {
        const layer_t *L = &m->layer[li];
        float *vmax = row_vmax + li * M * KVH;
        norm_rows(m, M, x, L->attn_norm, L->qkv.split, tmp, wide_in, &act);
        phase_mark(PHASE_NORM, &since);
        linear(&L->qkv, &act, acc, y, PHASE_QKV, &since);
#pragma omp parallel for if (M >= 8)
        for (int64_t r = 0; r < M; r++) {
            const int64_t p = positions[r], slot = ring_slot(p, RS), b = slots[r];
            float *row = y + r * QKV;
            const float *c = m->cos + p * half, *s = m->sin + p * half;
            for (int64_t h = 0; h < NH + KVH; h++) rope(row + h * D, c, s, half); /* q heads, then k heads */
            for (int64_t h = 0; h < NH; h++) {
                float qs;
                quantize_signed(row + h * D, D, qq + (r * NH + h) * D, &qs);
                qsc[r * NH + h] = qs * m->score_unit;
            }
            for (int64_t h = 0; h < KVH; h++) {
                const int64_t at = (b * KVH + h) * RS + slot;
                quantize_signed(row + (NH + h) * D, D, L->k + at * D, L->ks + at);
                quantize_signed(row + (NH + KVH + h) * D, D, L->v + at * D, L->vs + at);
            }
        }
        for (int64_t r = 0; r < M; r++) { /* running max along each cache row's rows, in order */
            const int64_t b = slots[r], slot = ring_slot(positions[r], RS);
            const int first = r == 0 || slots[r - 1] != b;
            for (int64_t h = 0; h < KVH; h++) {
                const float prev = first ? L->vmax[b * KVH + h] : vmax[(r - 1) * KVH + h];
                const float now = L->vs[(b * KVH + h) * RS + slot];
                vmax[r * KVH + h] = now > prev ? now : prev;
            }
        }
        phase_mark(PHASE_QKV_ROWS, &since);
        attend_rows(M, KVH, G, n_cached, RS, D, W, m->exp_bits, m->exp_coef, m->attn_mass, qq, qsc, positions, slots,
                    vmax, L->k, L->ks, L->v, L->vs, m->pos, attn);
        phase_mark(PHASE_ATTEND, &since);
        for (int64_t r = 0; r < M; r++)
            quantize_row(attn + r * NH * D, NH * D, (int)L->o.split, 0x80, hi_row(&act, r, NH * D),
                         lo_row(&act, r, NH * D), xs + r);
        phase_mark(PHASE_O_ROWS, &since);
        linear(&L->o, &act, acc, y, PHASE_O, &since);
        for (int64_t i = 0; i < M * H; i++) x[i] = x[i] + y[i];
        phase_mark(PHASE_OTHER, &since);
        norm_rows(m, M, x, L->mlp_norm, L->gate_up.split, tmp, wide_in, &act);
        phase_mark(PHASE_NORM, &since);
        linear(&L->gate_up, &act, acc, y, PHASE_GATE_UP, &since);
#pragma omp parallel for if (M >= 8)
        for (int64_t r = 0; r < M; r++) {
            const float *gate = y + r * 2 * I, *up = gate + I;
            float *a = tmp + r * wide_in;
            silu_row(gate, up, I, m->sigmoid, m->sigmoid_steps, m->sigmoid_offset, a);
            quantize_row(a, I, (int)L->down.split, 0x80, hi_row(&act, r, I), lo_row(&act, r, I), xs + r);
        }
        phase_mark(PHASE_SILU, &since);
        linear(&L->down, &act, acc, y, PHASE_DOWN, &since);
        for (int64_t i = 0; i < M * H; i++) x[i] = x[i] + y[i];
        phase_mark(PHASE_OTHER, &since);
    }
    if (logits) {
        norm_rows(m, M, x, m->final_norm, m->head.split, tmp, wide_in, &act);
        phase_mark(PHASE_NORM, &since);
        linear(&m->head, &act, acc, logits, PHASE_HEAD, &since);
    }
    status = 0;
#if defined(LMZIP_PROFILE)
    profiled_steps++;
#endif
done:
    free(y);
    free(tmp);
    free(acc);
    free(xq);
    free(xs);
    free(qq);
    free(qsc);
    free(attn);
    phase_mark(PHASE_OTHER, &since);
    return status;
}

/* After step_rows: cache row slots[i] keeps the value-scale maximum of row rows[i] (its
 * last accepted one) in every layer; row_vmax [layers, M, KVH]. */
void commit_vmax(const model_t *m, int64_t n, const int64_t *slots, const int64_t *rows, int64_t M,
                 const float *row_vmax) {
    const int64_t KVH = m->kv_heads;
    for (int64_t li = 0; li < m->layers; li++)
        for (int64_t i = 0; i < n; i++)
            for (int64_t h = 0; h < KVH; h++)
                m->layer[li].vmax[slots[i] * KVH + h] = row_vmax[(li * M + rows[i]) * KVH + h];
}

/* ---- row operations for the scoring path ----------------------------------------
 * model.py's extend path with kernels="c": the same row functions as the step, over M
 * rows, threaded; activations come out as int8 rows [M, K] (hi), then [M, K] (lo) when
 * split, for torch._int_mm. */

void rows_rms_quantize(int64_t M, int64_t K, const float *x, const float *w, double eps, int64_t split, int8_t *q,
                       float *scale) {
#pragma omp parallel
    {
        float *tmp = malloc(sizeof(float) * (size_t)K);
#pragma omp for schedule(static)
        for (int64_t r = 0; r < M; r++)
            rms_quantize_row(x + r * K, w, K, eps, (int)split, 0, tmp, (uint8_t *)q + r * K,
                             (uint8_t *)q + (M + r) * K, scale + r);
        free(tmp);
    }
}

void rows_quantize(int64_t M, int64_t K, const float *x, int64_t split, int8_t *q, float *scale) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < M; r++)
        quantize_row(x + r * K, K, (int)split, 0, (uint8_t *)q + r * K, (uint8_t *)q + (M + r) * K, scale + r);
}

/* acc [M or 2M, N] int32 from torch._int_mm -> y [M, N]. */
void rows_combine(int64_t M, int64_t N, const int32_t *acc, int64_t split, const float *xs, const float *ws,
                  const float *bias, float *y) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < M; r++)
        combine_row(acc + r * N, split ? acc + (M + r) * N : NULL, N, xs[r], ws, bias, y + r * N);
}

/* The gate_up product's acc [M or 2M, 2I] (gate, then up) -> the scaling, silu(gate) * up,
 * and the quantized rows for the down projection, in one pass (model.linear, silu_times,
 * quantize_activation). */
void rows_gate_up(int64_t M, int64_t I, const int32_t *acc, int64_t split_in, const float *xs, const float *ws,
                  const float *bias, const float *table, float steps, int64_t offset, int64_t split, int8_t *q,
                  float *scale) {
#pragma omp parallel
    {
        float *gu = malloc(sizeof(float) * (size_t)(2 * I)), *a = malloc(sizeof(float) * (size_t)I);
#pragma omp for schedule(static)
        for (int64_t r = 0; r < M; r++) {
            combine_row(acc + r * 2 * I, split_in ? acc + (M + r) * 2 * I : NULL, 2 * I, xs[r], ws, bias, gu);
            silu_row(gu, gu + I, I, table, steps, offset, a);
            quantize_row(a, I, (int)split, 0, (uint8_t *)q + r * I, (uint8_t *)q + (M + r) * I, scale + r);
        }
        free(gu);
        free(a);
    }
}

/* The qkv product's acc [M or 2M, (NH + 2 KVH) D] -> the scaling, RoPE on the query and
 * key heads (cos, sin [M, D / 2] at each row's position), and int8 rows per head with
 * their scales (model.linear, apply_rope, quantize_rows): q [M, NH, D] with qsc = scale
 * * score_unit, k and v [M, KVH, D] with ks, vs. */
void rows_qkv(int64_t M, int64_t NH, int64_t KVH, int64_t D, const int32_t *acc, int64_t split_in, const float *xs,
              const float *ws, const float *bias, const float *cos, const float *sin, float score_unit, int8_t *q,
              float *qsc, int8_t *k, float *ks, int8_t *v, float *vs) {
    const int64_t N = (NH + 2 * KVH) * D, half = D / 2;
#pragma omp parallel
    {
        float *row = malloc(sizeof(float) * (size_t)N);
#pragma omp for schedule(static)
        for (int64_t r = 0; r < M; r++) {
            combine_row(acc + r * N, split_in ? acc + (M + r) * N : NULL, N, xs[r], ws, bias, row);
            for (int64_t h = 0; h < NH + KVH; h++) rope(row + h * D, cos + r * half, sin + r * half, half);
            for (int64_t h = 0; h < NH; h++) {
                float s;
                quantize_signed(row + h * D, D, q + (r * NH + h) * D, &s);
                qsc[r * NH + h] = s * score_unit;
            }
            for (int64_t h = 0; h < KVH; h++) {
                quantize_signed(row + (NH + h) * D, D, k + (r * KVH + h) * D, ks + r * KVH + h);
                quantize_signed(row + (NH + KVH + h) * D, D, v + (r * KVH + h) * D, vs + r * KVH + h);
            }
        }
        free(row);
    }
}
