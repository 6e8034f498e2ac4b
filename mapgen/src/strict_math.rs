//! The natural logarithm as fdlibm 5.3 computes it, which is what Java's `StrictMath.log` is
//! specified to return and so what Apache Spark's `ln` returns, bit for bit.
//!
//! The first stage's statistics include the variance of log RTT, and an engine that computes
//! them elsewhere (docs/mapgen.md, "The statistics") must get the same bits, or the maps
//! differ in their last digits. Math libraries are free to differ in the last bit: glibc's
//! `log` differs from fdlibm on about 2.5 % of RTT values, the `libm` crate (musl's reduced
//! variant of this algorithm) on about 3 in a million. fdlibm is the one result that every
//! JVM must give, so mapgen computes it, here, from fdlibm's published algorithm (e_log.c,
//! Sun Microsystems 1993, freely distributable); `tests/integration/spark.rs` checks it
//! against Spark's `ln` on a million RTTs.

const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
const TWO54: f64 = f64::from_bits(0x4350_0000_0000_0000);
/// fdlibm's `0.33333333333333333`, as the double it rounds to.
const THIRD: f64 = f64::from_bits(0x3fd5_5555_5555_5555);
const LG1: f64 = f64::from_bits(0x3fe5_5555_5555_5593);
const LG2: f64 = f64::from_bits(0x3fd9_9999_9997_fa04);
const LG3: f64 = f64::from_bits(0x3fd2_4924_9422_9359);
const LG4: f64 = f64::from_bits(0x3fcc_71c5_1d8e_78af);
const LG5: f64 = f64::from_bits(0x3fc7_4664_96cb_03de);
const LG6: f64 = f64::from_bits(0x3fc3_9a09_d078_c69f);
const LG7: f64 = f64::from_bits(0x3fc2_f112_df3e_5244);

fn high(x: f64) -> i32 {
    (x.to_bits() >> 32) as i32
}

fn with_high(x: f64, hi: i32) -> f64 {
    f64::from_bits((u64::from(hi as u32) << 32) | (x.to_bits() & 0xffff_ffff))
}

/// `ln(x)`, exactly as fdlibm's `__ieee754_log` (and Java's `StrictMath.log`).
pub fn log(mut x: f64) -> f64 {
    let mut hx = high(x);
    let lx = x.to_bits() as u32;
    let mut k: i32 = 0;
    if hx < 0x0010_0000 {
        if ((hx & 0x7fff_ffff) as u32 | lx) == 0 {
            return f64::NEG_INFINITY;
        }
        if hx < 0 {
            return f64::NAN;
        }
        // Subnormal: scale up.
        k -= 54;
        x *= TWO54;
        hx = high(x);
    }
    if hx >= 0x7ff0_0000 {
        return x + x;
    }
    k += (hx >> 20) - 1023;
    hx &= 0x000f_ffff;
    let i = (hx + 0x95f64) & 0x0010_0000;
    // Normalise x or x/2 into [sqrt(2)/2, sqrt(2)).
    x = with_high(x, hx | (i ^ 0x3ff0_0000));
    k += i >> 20;
    let f = x - 1.0;
    if (0x000f_ffff & (2 + hx)) < 3 {
        // |f| < 2^-20
        if f == 0.0 {
            if k == 0 {
                return 0.0;
            }
            let dk = f64::from(k);
            return dk * LN2_HI + dk * LN2_LO;
        }
        let r = f * f * (0.5 - THIRD * f);
        if k == 0 {
            return f - r;
        }
        let dk = f64::from(k);
        return dk * LN2_HI - ((r - dk * LN2_LO) - f);
    }
    let s = f / (2.0 + f);
    let dk = f64::from(k);
    let z = s * s;
    let mut i = hx - 0x6147a;
    let w = z * z;
    let j = 0x6b851 - hx;
    let t1 = w * (LG2 + w * (LG4 + w * LG6));
    let t2 = z * (LG1 + w * (LG3 + w * (LG5 + w * LG7)));
    i |= j;
    let r = t2 + t1;
    if i > 0 {
        let hfsq = 0.5 * f * f;
        if k == 0 {
            f - (hfsq - s * (hfsq + r))
        } else {
            dk * LN2_HI - ((hfsq - (s * (hfsq + r) + dk * LN2_LO)) - f)
        }
    } else if k == 0 {
        f - s * (f - r)
    } else {
        dk * LN2_HI - ((s * (f - r) - dk * LN2_LO) - f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_the_platform_to_an_ulp_and_on_the_special_values() {
        let ulps = |a: f64, b: f64| (a.to_bits() as i64 - b.to_bits() as i64).abs();
        let mut x = 1e-3f64;
        while x < 1e6 {
            assert!(ulps(log(x), x.ln()) <= 1, "{x}");
            x *= 1.000_37;
        }
        assert_eq!(log(1.0), 0.0);
        assert_eq!(log(0.0), f64::NEG_INFINITY);
        assert!(log(-1.0).is_nan());
        assert_eq!(log(f64::INFINITY), f64::INFINITY);
        assert!(ulps(log(f64::MIN_POSITIVE / 8.0), (f64::MIN_POSITIVE / 8.0).ln()) <= 1);
        // Values fdlibm is known to round otherwise than glibc (found against Spark's ln).
        assert_eq!(
            log(f64::from(f32::from_bits(1_195_199_675))).to_bits(),
            4622263008732018175
        );
        assert_eq!(
            log(f64::from(f32::from_bits(1_085_934_467))).to_bits(),
            4610606291690408193
        );
    }
}
