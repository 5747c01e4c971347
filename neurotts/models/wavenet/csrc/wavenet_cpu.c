/* One-sample-at-a-time WaveNet generation on the CPU, a block of samples per call.
 *
 * The Python generator (neurotts/models/wavenet/generate.py) prepares every weight as a
 * matmul operand laid out (in, out), upsamples the conditioning of the block, draws the
 * sampling noise, and calls wn_run(). Per sample this file runs the
 * residual layers, the skip/output head and the sampling choice, then embeds the chosen
 * sample as the next input, with no allocation and no interpreter in the loop: at batch 1
 * the torch-op path spends about half of each sample in per-op overhead.
 *
 * Layout (all float32, contiguous):
 *   rings  per layer l: (ring_len[l], B, R) past inputs of layer l, time-major; slot t % len
 *          holds x_l[t]. Zeros stand for the causal padding before t = 0.
 *   past   per layer l: (dil[l], B, G) conditioning projection + past-tap contribution of the
 *          samples of the current window of dil[l] steps (see fill_past); at a sample's step
 *          its slot receives the newest tap and becomes the gate's input.
 *   w_taps (L, K, R, G): tap k multiplies x[t - (K-1-k) d].
 *   w_res  (L, H, R), b_res (L, R); w_skip (L*H, S), b_skip (S); w_h1 (S, S); w_h2 (S, OUT).
 *   w_in   mu-law: (classes, R) embedding table; MoL: (R,) weight with b_in (R,).
 *   w_cond (L, C, G) each layer's 1x1 conditioning projection, b_cond (L, G) the dilated
 *          conv's bias.
 *   cond   (n, B, C) the upsampled conditioning of the block's rows. It is projected per
 *          layer inside the kernel, a window at a time, into `past` (cache-resident): a
 *          block projected in advance would be L*G/C = 96 times larger and stream from
 *          memory.
 *   gumbel (n, B, NK) and logistic (n, B): noise already scaled by the temperature.
 *   samples (steps, B): the chosen class (mu-law, as a float) or the sample value (MoL).
 *   outputs (steps, B, OUT) or NULL: each step's logits / mixture parameters.
 *
 * Every weight matrix is passed packed by wn_pack().
 *
 * Matmuls are written in "axpy" form, y[o] += x[i] * W[i, o], with tiles of rows x outputs
 * kept in registers over the whole input dimension: with AVX-512, 1..12 rows x 32..128
 * outputs in 16-wide vectors (32 registers); otherwise 6x16, 2x32 and 1x32 in GCC's generic
 * 8-wide vectors (16 AVX registers), which compile to any SIMD the machine has. At batch 1 a
 * sample reads each weight at most once (a dilation-d layer's past-tap weights once per d
 * samples), from cache, so these loops are bound by cache bandwidth, not arithmetic; from
 * about 4 rows up each weight vector serves several FMAs and they approach the FMA peak.
 */

#include <stdint.h>
#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

typedef float v8 __attribute__((vector_size(32)));

typedef struct {
    int64_t batch, layers, k, r, g, s, n_out, mulaw, n_mix, n_noise, steps, n_cond, bf16;
    float log_scale_min;
    const int64_t *dil, *ring_len, *ring_off, *past_off;
    float *rings, *past;
    const float *w_taps, *w_res, *b_res, *w_skip, *b_skip;
    const float *w_h1, *b_h1, *w_h2, *b_h2, *w_in, *b_in, *w_cond, *b_cond;
    float *z, *hidden, *hidden2;
} wn_model;

static inline v8 load8(const float *p) { v8 v; memcpy(&v, p, sizeof v); return v; }
static inline void store8(float *p, v8 v) { memcpy(p, &v, sizeof v); }
static inline v8 splat(float x) { return (v8){x, x, x, x, x, x, x, x}; }

/* Weights are stored packed (see wn_pack): the first O/32*32 outputs as panels (O/32, I, 32),
 * each panel contiguous, then the remaining O%32 outputs as an (I, O%32) matrix. A panel is
 * then one sequential stream, and a panel reused across rows stays in L1 instead of being
 * spread over a few cache sets by the row stride. */
void wn_pack(int64_t I, int64_t O, const float *W, float *dst)
{
    const int64_t panels = O / 32, tail = O - panels * 32;
    for (int64_t p = 0; p < panels; p++)
        for (int64_t i = 0; i < I; i++)
            memcpy(dst + (p * I + i) * 32, W + i * O + p * 32, 32 * sizeof(float));
    for (int64_t i = 0; i < I; i++)
        memcpy(dst + panels * 32 * I + i * tail, W + i * O + panels * 32, tail * sizeof(float));
}

/* The scalar tail of a product: outputs panels*32 .. O-1, stored (I, O%32) at `rest`. */
static void gemm_tail(int64_t M, const float *const *xs, int64_t I, const float *rest, int64_t O,
                      float *const *ys)
{
    const int64_t panels = O / 32, tail = O - panels * 32;
    for (int64_t m = 0; m < M; m++) {
        const float *x = xs[m];
        float *y = ys[m] + panels * 32;
        for (int64_t i = 0; i < I; i++) {
            const float xi = x[i], *w = rest + i * tail;
            for (int64_t o = 0; o < tail; o++) y[o] += xi * w[o];
        }
    }
}

#if defined(__AVX512F__)
/* With AVX-512 there are 32 vector registers of 16 floats: a tile of MR rows x NP panels
 * keeps 2*MR*NP accumulators (<= 24), 2*NP weight vectors and one broadcast in registers
 * over the whole input dimension. Zen 4 and Intel cores retire about one 16-wide FMA per
 * cycle with a latency of 4: a tile needs >= 4 independent accumulators to keep the FMA
 * unit busy, and as many rows as registers allow to reuse each weight vector loaded. So
 * batches of 4..12 rows run one panel at a time, 2..3 rows two panels, one row four. */
typedef float v16 __attribute__((vector_size(64)));

static inline v16 load16(const float *p) { v16 v; memcpy(&v, p, sizeof v); return v; }
static inline void store16(float *p, v16 v) { memcpy(p, &v, sizeof v); }

static inline __attribute__((always_inline)) void
tile(const int MR, const int NP, const float *const *xs, int64_t I, const float *W, int64_t p0,
     float *const *ys)
{
    v16 acc[12][4][2];
    const float *x[12];
    for (int r = 0; r < MR; r++) {
        x[r] = xs[r];
        for (int p = 0; p < NP; p++) {
            acc[r][p][0] = load16(ys[r] + (p0 + p) * 32);
            acc[r][p][1] = load16(ys[r] + (p0 + p) * 32 + 16);
        }
    }
    for (int64_t i = 0; i < I; i++) {
        v16 w[4][2];
        for (int p = 0; p < NP; p++) {
            const float *wp = W + ((p0 + p) * I + i) * 32;
            w[p][0] = load16(wp);
            w[p][1] = load16(wp + 16);
        }
        for (int r = 0; r < MR; r++) {
            /* From memory: a register-source broadcast would take a slot of the FMA pipes. */
            const v16 v = (v16)_mm512_set1_ps(x[r][i]);
            for (int p = 0; p < NP; p++) {
                acc[r][p][0] += v * w[p][0];
                acc[r][p][1] += v * w[p][1];
            }
        }
    }
    for (int r = 0; r < MR; r++)
        for (int p = 0; p < NP; p++) {
            store16(ys[r] + (p0 + p) * 32, acc[r][p][0]);
            store16(ys[r] + (p0 + p) * 32 + 16, acc[r][p][1]);
        }
}

/* Every tile of one kind of product behind one signature: x the row operands (float rows,
 * or bf16-pair rows), n their length (inputs, or input pairs), W the packed weights. */
typedef void (*tile_fn)(const void *const *x, int64_t n, const void *W, int64_t p0,
                        float *const *ys);
typedef struct {
    tile_fn one[13];                   /* [mr]: mr rows x 1 panel */
    tile_fn wide1, wide2, wide3, wide4;  /* 1 x 4, 2 x 2, 3 x 2 and 4 x 2 panels */
} tile_set;

/* One chunk of mr <= 12 rows over every panel: few rows take several panels per tile (more
 * independent accumulators), then single panels for what is left. */
static void run_tiles(const tile_set *t, int64_t mr, const void *const *x, int64_t n,
                      const void *W, int64_t panels, float *const *y)
{
    const tile_fn wide[5] = {NULL, t->wide1, t->wide2, t->wide3, t->wide4};
    const int64_t step = mr == 1 ? 4 : 2;
    int64_t p = 0;
    if (mr <= 4)
        for (; p + step <= panels; p += step) wide[mr](x, n, W, p, y);
    for (; p < panels; p++) t->one[mr](x, n, W, p, y);
}

#define TILE(MR, NP)                                                                       \
    static void tile_##MR##x##NP(const void *const *x, int64_t I, const void *W,           \
                                 int64_t p0, float *const *ys)                             \
    { tile(MR, NP, (const float *const *)x, I, W, p0, ys); }
TILE(1, 1) TILE(2, 1) TILE(3, 1) TILE(4, 1) TILE(5, 1) TILE(6, 1) TILE(7, 1) TILE(8, 1)
TILE(9, 1) TILE(10, 1) TILE(11, 1) TILE(12, 1) TILE(1, 4) TILE(2, 2) TILE(3, 2) TILE(4, 2)
static const tile_set f32_tiles = {
    {NULL, tile_1x1, tile_2x1, tile_3x1, tile_4x1, tile_5x1, tile_6x1, tile_7x1, tile_8x1,
     tile_9x1, tile_10x1, tile_11x1, tile_12x1},
    tile_1x4, tile_2x2, tile_3x2, tile_4x2};

/* ys[m][0:O] += sum_i xs[m][i] * W[i][0:O] for m < M, W packed by wn_pack (row pointers:
 * rows need not be evenly spaced). Rows go in balanced chunks of at most 12 (16 rows: two of
 * 8, not 12 + 4), each chunk over every panel while those panels stay in L1/L2. */
static void gemm_acc(int64_t M, const float *const *xs, int64_t I, const float *W, int64_t O,
                     float *const *ys)
{
    const int64_t panels = O / 32;
    const int64_t chunks = (M + 11) / 12;
    for (int64_t c = 0, m = 0; c < chunks; c++) {
        const int64_t mr = (M - m) / (chunks - c);  /* balanced: sizes differ by at most 1 */
        run_tiles(&f32_tiles, mr, (const void *const *)(xs + m), I, W, panels, ys + m);
        m += mr;
    }
    if (O % 32) gemm_tail(M, xs, I, W + panels * 32 * I, O, ys);
}
#else
/* ys[m][0:O] += sum_i xs[m][i] * W[i][0:O] for m < M, W packed by wn_pack (row pointers:
 * rows need not be evenly spaced). Accumulators for two rows x 32 outputs stay in registers
 * over the whole input dimension. */
static void gemm_acc(int64_t M, const float *const *xs, int64_t I, const float *W, int64_t O,
                     float *const *ys)
{
    const int64_t panels = O / 32, tail = O - panels * 32;
    for (int64_t p = 0; p < panels; p++) {
        const float *panel = W + p * I * 32;
        const int64_t o0 = p * 32;
        int64_t m = 0;
        /* Six rows x 16 outputs: 12 accumulators, two weight vectors and one broadcast fill
         * the 16 AVX registers, and each weight vector loaded serves six FMAs. */
        for (; m + 6 <= M; m += 6) {
            for (int64_t h = 0; h < 32; h += 16) {
                const float *x0 = xs[m], *x1 = xs[m + 1], *x2 = xs[m + 2];
                const float *x3 = xs[m + 3], *x4 = xs[m + 4], *x5 = xs[m + 5];
                float *y0 = ys[m] + o0 + h, *y1 = ys[m + 1] + o0 + h, *y2 = ys[m + 2] + o0 + h;
                float *y3 = ys[m + 3] + o0 + h, *y4 = ys[m + 4] + o0 + h, *y5 = ys[m + 5] + o0 + h;
                v8 a0 = load8(y0), b0 = load8(y0 + 8), a1 = load8(y1), b1 = load8(y1 + 8);
                v8 a2 = load8(y2), b2 = load8(y2 + 8), a3 = load8(y3), b3 = load8(y3 + 8);
                v8 a4 = load8(y4), b4 = load8(y4 + 8), a5 = load8(y5), b5 = load8(y5 + 8);
                for (int64_t i = 0; i < I; i++) {
                    const float *w = panel + i * 32 + h;
                    const v8 w0 = load8(w), w1 = load8(w + 8);
                    v8 v;
                    v = splat(x0[i]); a0 += v * w0; b0 += v * w1;
                    v = splat(x1[i]); a1 += v * w0; b1 += v * w1;
                    v = splat(x2[i]); a2 += v * w0; b2 += v * w1;
                    v = splat(x3[i]); a3 += v * w0; b3 += v * w1;
                    v = splat(x4[i]); a4 += v * w0; b4 += v * w1;
                    v = splat(x5[i]); a5 += v * w0; b5 += v * w1;
                }
                store8(y0, a0); store8(y0 + 8, b0); store8(y1, a1); store8(y1 + 8, b1);
                store8(y2, a2); store8(y2 + 8, b2); store8(y3, a3); store8(y3 + 8, b3);
                store8(y4, a4); store8(y4 + 8, b4); store8(y5, a5); store8(y5 + 8, b5);
            }
        }
        for (; m + 2 <= M; m += 2) {
            const float *x0 = xs[m], *x1 = xs[m + 1];
            float *y0 = ys[m] + o0, *y1 = ys[m + 1] + o0;
            v8 a0 = load8(y0), a1 = load8(y0 + 8), a2 = load8(y0 + 16), a3 = load8(y0 + 24);
            v8 c0 = load8(y1), c1 = load8(y1 + 8), c2 = load8(y1 + 16), c3 = load8(y1 + 24);
            for (int64_t i = 0; i < I; i++) {
                const float *w = panel + i * 32;
                v8 w0 = load8(w), w1 = load8(w + 8), w2 = load8(w + 16), w3 = load8(w + 24);
                const v8 p0 = splat(x0[i]), q0 = splat(x1[i]);
                a0 += p0 * w0; a1 += p0 * w1; a2 += p0 * w2; a3 += p0 * w3;
                c0 += q0 * w0; c1 += q0 * w1; c2 += q0 * w2; c3 += q0 * w3;
            }
            store8(y0, a0); store8(y0 + 8, a1); store8(y0 + 16, a2); store8(y0 + 24, a3);
            store8(y1, c0); store8(y1 + 8, c1); store8(y1 + 16, c2); store8(y1 + 24, c3);
        }
        for (; m < M; m++) {
            const float *x0 = xs[m];
            float *y0 = ys[m] + o0;
            v8 a0 = load8(y0), a1 = load8(y0 + 8), a2 = load8(y0 + 16), a3 = load8(y0 + 24);
            for (int64_t i = 0; i < I; i++) {
                const float *w = panel + i * 32;
                const v8 p0 = splat(x0[i]);
                a0 += p0 * load8(w); a1 += p0 * load8(w + 8);
                a2 += p0 * load8(w + 16); a3 += p0 * load8(w + 24);
            }
            store8(y0, a0); store8(y0 + 8, a1); store8(y0 + 16, a2); store8(y0 + 24, a3);
        }
    }
    if (tail) gemm_tail(M, xs, I, W + panels * 32 * I, O, ys);
}
#endif

/* bfloat16 products (optional, CPUs with AVX512-BF16: Zen 4, Cooper Lake, Sapphire Rapids
 * and later). VDPBF16PS multiplies pairs of bf16 values and adds both products to a float32
 * accumulator: twice the multiply-adds of a float32 FMA per instruction, and half the bytes
 * of weights to read. Weights and the rows multiplied are rounded to bf16 (8 significant
 * bits) once; every sum stays float32, and so do everything between the products (gates,
 * residual sums, the head's softmax and the sampling).
 *
 * Layout (wn_pack_bf16): panels of 32 outputs as before, the inputs taken in pairs: panel p
 * holds (I+1)/2 pair-rows of 32 outputs x 2 inputs, [o][2] interleaved, so one 64-byte load
 * is 16 outputs of a pair-row; an odd last input is paired with a zero. The O%32 tail stays
 * float32, (I, O%32), right after the panels. A packed matrix never needs more bytes than its
 * float32 packing, so a buffer laid out for float32 matrices holds the bf16 ones at the same
 * offsets. */
int wn_has_bf16(void)
{
#if defined(__AVX512BF16__)
    return 1;
#else
    return 0;
#endif
}

/* float32 -> bf16, rounding to nearest even (what VCVTNEPS2BF16 does); NaN stays NaN. */
static inline uint16_t to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

void wn_pack_bf16(int64_t I, int64_t O, const float *W, void *dst)
{
    const int64_t panels = O / 32, tail = O - panels * 32, pairs = (I + 1) / 2;
    uint16_t *d = dst;
    for (int64_t p = 0; p < panels; p++)
        for (int64_t q = 0; q < pairs; q++)
            for (int64_t o = 0; o < 32; o++)
                for (int64_t h = 0; h < 2; h++) {
                    const int64_t i = 2 * q + h;
                    d[((p * pairs + q) * 32 + o) * 2 + h] = i < I ? to_bf16(W[i * O + p * 32 + o]) : 0;
                }
    float *rest = (float *)(d + panels * pairs * 64);
    for (int64_t i = 0; i < I; i++)
        memcpy(rest + i * tail, W + i * O + panels * 32, tail * sizeof(float));
}

#if defined(__AVX512BF16__)
/* Rows of I floats -> rows of (I+1)/2 bf16 pairs (one uint32 each, the even input in the low
 * half, as VDPBF16PS pairs them). */
static void rows_to_bf16(int64_t M, const float *const *xs, int64_t I, uint32_t *dst)
{
    const int64_t pairs = (I + 1) / 2;
    for (int64_t r = 0; r < M; r++) {
        const float *x = xs[r];
        uint16_t *d = (uint16_t *)(dst + r * pairs);
        int64_t i = 0;
        for (; i + 16 <= I; i += 16) {
            const __m256bh b = _mm512_cvtneps_pbh(_mm512_loadu_ps(x + i));
            memcpy(d + i, &b, sizeof b);
        }
        for (; i < I; i++) d[i] = to_bf16(x[i]);
        if (I % 2) d[I] = 0;
    }
}

/* As tile(): MR rows x NP panels, 2*MR*NP float32 accumulators, over pair-rows. */
static inline __attribute__((always_inline)) void
tile_bf(const int MR, const int NP, const uint32_t *const *xb, int64_t pairs, const uint16_t *W,
        int64_t p0, float *const *ys)
{
    __m512 acc[12][4][2];
    for (int r = 0; r < MR; r++)
        for (int p = 0; p < NP; p++) {
            acc[r][p][0] = _mm512_loadu_ps(ys[r] + (p0 + p) * 32);
            acc[r][p][1] = _mm512_loadu_ps(ys[r] + (p0 + p) * 32 + 16);
        }
    for (int64_t q = 0; q < pairs; q++) {
        __m512bh w[4][2];
        for (int p = 0; p < NP; p++) {
            const uint16_t *wp = W + ((p0 + p) * pairs + q) * 64;
            w[p][0] = (__m512bh)_mm512_loadu_si512(wp);
            w[p][1] = (__m512bh)_mm512_loadu_si512(wp + 32);
        }
        for (int r = 0; r < MR; r++) {
            const __m512bh v = (__m512bh)_mm512_set1_epi32((int)xb[r][q]);
            for (int p = 0; p < NP; p++) {
                acc[r][p][0] = _mm512_dpbf16_ps(acc[r][p][0], v, w[p][0]);
                acc[r][p][1] = _mm512_dpbf16_ps(acc[r][p][1], v, w[p][1]);
            }
        }
    }
    for (int r = 0; r < MR; r++)
        for (int p = 0; p < NP; p++) {
            _mm512_storeu_ps(ys[r] + (p0 + p) * 32, acc[r][p][0]);
            _mm512_storeu_ps(ys[r] + (p0 + p) * 32 + 16, acc[r][p][1]);
        }
}

#define TILE_BF(MR, NP)                                                                    \
    static void tile_bf_##MR##x##NP(const void *const *x, int64_t pairs, const void *W,    \
                                    int64_t p0, float *const *ys)                          \
    { tile_bf(MR, NP, (const uint32_t *const *)x, pairs, W, p0, ys); }
TILE_BF(1, 1) TILE_BF(2, 1) TILE_BF(3, 1) TILE_BF(4, 1) TILE_BF(5, 1) TILE_BF(6, 1)
TILE_BF(7, 1) TILE_BF(8, 1) TILE_BF(9, 1) TILE_BF(10, 1) TILE_BF(11, 1) TILE_BF(12, 1)
TILE_BF(1, 4) TILE_BF(2, 2) TILE_BF(3, 2) TILE_BF(4, 2)
static const tile_set bf16_tiles = {
    {NULL, tile_bf_1x1, tile_bf_2x1, tile_bf_3x1, tile_bf_4x1, tile_bf_5x1, tile_bf_6x1,
     tile_bf_7x1, tile_bf_8x1, tile_bf_9x1, tile_bf_10x1, tile_bf_11x1, tile_bf_12x1},
    tile_bf_1x4, tile_bf_2x2, tile_bf_3x2, tile_bf_4x2};

/* gemm_acc with W packed by wn_pack_bf16: each chunk of rows is rounded to bf16 pairs once
 * (on the stack: 12 x (I+1)/2 x 4 bytes), then multiplied panel by panel. */
static void gemm_acc_bf16(int64_t M, const float *const *xs, int64_t I, const void *Wv,
                          int64_t O, float *const *ys)
{
    const uint16_t *W = Wv;
    const int64_t panels = O / 32, pairs = (I + 1) / 2;
    const int64_t chunks = (M + 11) / 12;
    uint32_t xb_rows[12 * pairs];
    const uint32_t *xb[12];
    for (int64_t c = 0, m = 0; c < chunks; c++) {
        const int64_t mr = (M - m) / (chunks - c);
        rows_to_bf16(mr, xs + m, I, xb_rows);
        for (int64_t r = 0; r < mr; r++) xb[r] = xb_rows + r * pairs;
        run_tiles(&bf16_tiles, mr, (const void *const *)xb, pairs, W, panels, ys + m);
        m += mr;
    }
    if (O % 32) gemm_tail(M, xs, I, (const float *)(W + panels * pairs * 64), O, ys);
}
#endif

/* The model's products: float32, or bf16 when the weights were packed by wn_pack_bf16. */
static inline void product(int bf16, int64_t M, const float *const *xs, int64_t I,
                           const float *W, int64_t O, float *const *ys)
{
#if defined(__AVX512BF16__)
    if (bf16) {
        gemm_acc_bf16(M, xs, I, W, O, ys);
        return;
    }
#endif
    (void)bf16;
    gemm_acc(M, xs, I, W, O, ys);
}

/* The product on its own, for tests: Y (M, O) += X (M, I) @ W, W packed by wn_pack (bf16 = 0)
 * or wn_pack_bf16 (bf16 = 1, only where wn_has_bf16()), at most 64 rows per call. */
void wn_gemm(int64_t M, const float *X, int64_t I, const float *W, int64_t O, float *Y,
             int64_t bf16)
{
    const float *xs[64];
    float *ys[64];
    for (int64_t m = 0; m < M && m < 64; m++) {
        xs[m] = X + m * I;
        ys[m] = Y + m * O;
    }
    product((int)bf16, M < 64 ? M : 64, xs, I, W, O, ys);
}

/* exp(x) to a few ulp for x in [-87, 88], branch-free so that loops over it vectorise (with
 * -fno-trapping-math): x = n ln2 + r with n = round(x / ln2) (adding and subtracting 1.5 * 2^23
 * rounds to nearest) and |r| <= ln2/2, e^r by its Taylor series to r^7 (truncation < 2e-8),
 * 2^n from the exponent bits. Inputs outside the range are clamped (e^-87 ~ 1.6e-38,
 * e^88 ~ 1.7e38), which leaves the gates below exact to float precision. */
static inline float fast_exp(float x)
{
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    const float n = (x * 1.44269504f + 12582912.0f) - 12582912.0f;
    const float r = x - n * 0.693145752f - n * 1.42860677e-6f; /* ln2 split in two */
    const float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24
                    + r * (1.0f / 120 + r * (1.0f / 720 + r * (1.0f / 5040)))))));
    const int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* z = tanh(a) * sigmoid(b), tanh(a) = 1 - 2 / (1 + e^{2a}), sigmoid(b) = 1 / (1 + e^{-b}). */
static void gated(int64_t n, const float *restrict a, const float *restrict b, float *restrict z)
{
    for (int64_t h = 0; h < n; h++) {
        const float th = 1.0f - 2.0f / (1.0f + fast_exp(2.0f * a[h]));
        const float sg = 1.0f / (1.0f + fast_exp(-b[h]));
        z[h] = th * sg;
    }
}

/* The gate on its own, for tests: z[i] = tanh(a[i]) * sigmoid(b[i]). */
void wn_gate(int64_t n, const float *a, const float *b, float *z) { gated(n, a, b, z); }

static inline int64_t wrap(int64_t v, int64_t n) { v %= n; return v < 0 ? v + n : v; }

static inline float *ring_row(const wn_model *m, int64_t l, int64_t t, int64_t b)
{
    return m->rings + m->ring_off[l] + (wrap(t, m->ring_len[l]) * m->batch + b) * m->r;
}

/* Layer l's past for the window starting at sample t (block row j), rows q < rows:
 * past[(t+q) % d][b] = b_cond[l] + Wc_l cond[j+q][b] + sum_{c < K-1} W_c x[t+q-(K-1-c)d].
 * Every tap read here is a sample before t, so one (rows*B) x ((K-1)R) x G product serves
 * `rows` steps and reads the past-tap weights once for them all; the conditioning likewise. */
static void fill_past(const wn_model *m, int64_t l, int64_t t, int64_t j, int64_t rows,
                      const float *cond, const float **xs, float **ys)
{
    const int64_t B = m->batch, G = m->g, R = m->r, K = m->k, d = m->dil[l];
    const float *w = m->w_taps + l * K * R * G;
    for (int64_t q = 0; q < rows; q++)
        for (int64_t b = 0; b < B; b++) {
            float *y = m->past + m->past_off[l] + (((t + q) % d) * B + b) * G;
            memcpy(y, m->b_cond + l * G, G * sizeof(float));
            ys[q * B + b] = y;
            xs[q * B + b] = cond + ((j + q) * B + b) * m->n_cond;
        }
    product((int)m->bf16, rows * B, xs, m->n_cond, m->w_cond + l * m->n_cond * G, G, ys);
    for (int64_t c = 0; c + 1 < K; c++) {
        for (int64_t q = 0; q < rows; q++)
            for (int64_t b = 0; b < B; b++)
                xs[q * B + b] = ring_row(m, l, t + q - (K - 1 - c) * d, b);
        product((int)m->bf16, rows * B, xs, R, w + c * R * G, G, ys);
    }
}

static void embed(const wn_model *m, int64_t t, int64_t b, float value)
{
    float *x = ring_row(m, 0, t, b);
    if (m->mulaw) {
        memcpy(x, m->w_in + (int64_t)value * m->r, m->r * sizeof(float));
    } else {
        for (int64_t i = 0; i < m->r; i++) x[i] = m->b_in[i] + value * m->w_in[i];
    }
}

static float choose(const wn_model *m, const float *out, const float *gumbel, float logistic)
{
    const int64_t n = m->mulaw ? m->n_out : m->n_mix;
    int64_t best = 0;
    float best_v = out[0] + gumbel[0];
    for (int64_t i = 1; i < n; i++) {
        float v = out[i] + gumbel[i];
        if (v > best_v) { best_v = v; best = i; }
    }
    if (m->mulaw) return (float)best;
    float mean = out[m->n_mix + best];
    float log_scale = out[2 * m->n_mix + best];
    if (log_scale < m->log_scale_min) log_scale = m->log_scale_min;
    float x = mean + fast_exp(log_scale) * logistic;
    return x < -1.0f ? -1.0f : (x > 1.0f ? 1.0f : x);
}

/* Entries the row-pointer scratch (xs, ys) of wn_run needs: B times the largest dilation. */
int64_t wn_scratch_rows(const wn_model *m)
{
    int64_t rows = 1;
    for (int64_t l = 0; l < m->layers; l++) rows = m->dil[l] > rows ? m->dil[l] : rows;
    return rows * m->batch;
}

/* Samples t0 .. t0+n-1 (block rows 0 .. n-1). Ring slot t0 of layer 0 must already hold the
 * embedded input of sample t0; the last sample's successor is embedded only if t < steps-1.
 * xs/ys: caller-provided pointer scratch of wn_scratch_rows() entries each. */
int wn_run(const wn_model *m, int64_t t0, int64_t n, const float *cond, const float *gumbel,
           const float *logistic, float *samples, float *outputs, const float **xs, float **ys,
           float *out)
{
    const int64_t B = m->batch, L = m->layers, R = m->r, G = m->g, H = m->g / 2, S = m->s;
    const int64_t K = m->k;
    for (int64_t j = 0; j < n; j++) {
        const int64_t t = t0 + j;
        for (int64_t l = 0; l < L; l++) {
            const int64_t d = m->dil[l];
            /* A window of d steps starts at multiples of d; a block may start mid-window. */
            if (t % d == 0 || j == 0) {
                int64_t rows = d - t % d;
                if (rows > n - j) rows = n - j;
                fill_past(m, l, t, j, rows, cond, xs, ys);
            }
            /* The newest tap completes the gate input in place: this slot of `past` is read
             * by this step only (the next window refills it). */
            const float *w_now = m->w_taps + (l * K + K - 1) * R * G;
            float *gate = m->past + m->past_off[l] + (t % d) * B * G;  /* (B, G) */
            for (int64_t b = 0; b < B; b++) {
                xs[b] = ring_row(m, l, t, b);
                ys[b] = gate + b * G;
            }
            product((int)m->bf16, B, xs, R, w_now, G, ys);
            for (int64_t b = 0; b < B; b++)
                gated(H, gate + b * G, gate + b * G + H, m->z + (b * L + l) * H);
            if (l + 1 == L) break; /* the last layer's residual output is never used */
            for (int64_t b = 0; b < B; b++) {
                const float *x = ring_row(m, l, t, b);
                float *y = ring_row(m, l + 1, t, b);
                const float *bias = m->b_res + l * R;
                for (int64_t i = 0; i < R; i++) y[i] = bias[i] + 0.70710678118654752f * x[i];
                xs[b] = m->z + (b * L + l) * H;
                ys[b] = y;
            }
            product((int)m->bf16, B, xs, H, m->w_res + l * H * R, R, ys);
        }
        /* Head: every layer's skip 1x1 conv as one product, ReLU, 1x1, ReLU, 1x1. */
        for (int64_t b = 0; b < B; b++) {
            memcpy(m->hidden + b * S, m->b_skip, S * sizeof(float));
            xs[b] = m->z + b * L * H;
            ys[b] = m->hidden + b * S;
        }
        product((int)m->bf16, B, xs, L * H, m->w_skip, S, ys);
        for (int64_t i = 0; i < B * S; i++) m->hidden[i] = m->hidden[i] > 0 ? m->hidden[i] : 0;
        for (int64_t b = 0; b < B; b++) {
            memcpy(m->hidden2 + b * S, m->b_h1, S * sizeof(float));
            xs[b] = m->hidden + b * S;
            ys[b] = m->hidden2 + b * S;
        }
        product((int)m->bf16, B, xs, S, m->w_h1, S, ys);
        for (int64_t i = 0; i < B * S; i++) m->hidden2[i] = m->hidden2[i] > 0 ? m->hidden2[i] : 0;
        for (int64_t b = 0; b < B; b++) {
            memcpy(out + b * m->n_out, m->b_h2, m->n_out * sizeof(float));
            xs[b] = m->hidden2 + b * S;
            ys[b] = out + b * m->n_out;
        }
        product((int)m->bf16, B, xs, S, m->w_h2, m->n_out, ys);
        for (int64_t b = 0; b < B; b++) {
            const float *o = out + b * m->n_out;
            float value = choose(m, o, gumbel + (j * B + b) * m->n_noise, logistic[j * B + b]);
            samples[t * B + b] = value;
            if (outputs) memcpy(outputs + (t * B + b) * m->n_out, o, m->n_out * sizeof(float));
            if (t + 1 < m->steps) embed(m, t + 1, b, value);
        }
    }
    return 0;
}
