//! BSON Decimal128: IEEE 754-2008 decimal128 in its binary integer decimal (BID) encoding.
//!
//! A finite value is `(-1)^sign × coefficient × 10^exponent`, with a coefficient of at most
//! 34 digits and an exponent between -6176 and 6111. polygate reads such values into Arrow
//! Decimal128 columns of a fixed scale, exactly or not at all.

/// The largest coefficient decimal128 holds: 10^34 - 1.
const MAX_COEFFICIENT: u128 = 10u128.pow(34) - 1;
/// The exponent bias.
const BIAS: i32 = 6176;
/// Arrow's largest Decimal128 precision: 38 digits.
const MAX_UNSCALED: u128 = 10u128.pow(38) - 1;

/// A decoded decimal128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bid {
    Finite {
        negative: bool,
        coefficient: u128,
        exponent: i32,
    },
    Infinity {
        negative: bool,
    },
    NaN,
}

impl Bid {
    /// Decodes the 16 bytes of a BSON Decimal128 (little-endian).
    pub(crate) fn decode(bytes: [u8; 16]) -> Self {
        let value = u128::from_le_bytes(bytes);
        let high = (value >> 64) as u64;
        let negative = high >> 63 == 1;
        let combination = (high >> 58) & 0x1f;
        if combination == 0x1f {
            return Self::NaN;
        }
        if combination == 0x1e {
            return Self::Infinity { negative };
        }
        let (exponent, coefficient) = if (high >> 61) & 0b11 == 0b11 {
            // The "11" form has an implicit 100 prefix: its coefficients all exceed 10^34 - 1,
            // which the standard defines as non-canonical, read as zero.
            (((high >> 47) & 0x3fff) as i32, 0)
        } else {
            let coefficient = value & ((1u128 << 113) - 1);
            let coefficient = if coefficient > MAX_COEFFICIENT {
                0
            } else {
                coefficient
            };
            (((high >> 49) & 0x3fff) as i32, coefficient)
        };
        Self::Finite {
            negative,
            coefficient,
            exponent: exponent - BIAS,
        }
    }

    /// Encodes `unscaled × 10^-scale`, if its coefficient fits in 34 digits.
    pub(crate) fn encode(unscaled: i128, scale: i8) -> Option<[u8; 16]> {
        let coefficient = unscaled.unsigned_abs();
        if coefficient > MAX_COEFFICIENT {
            return None;
        }
        let exponent = (BIAS - i32::from(scale)) as u128;
        let sign = u128::from(unscaled < 0) << 127;
        Some((sign | (exponent << 113) | coefficient).to_le_bytes())
    }

    /// The digits after the decimal point of a finite value, trailing zeros included; `None`
    /// for infinities and NaN.
    pub(crate) fn finite_scale(&self) -> Option<i8> {
        match self {
            Self::Finite { exponent, .. } => Some((-*exponent).clamp(0, 127) as i8),
            _ => None,
        }
    }

    /// The value as an Arrow Decimal128 of scale `scale` (38 digits at most), or why it is
    /// not one exactly.
    pub(crate) fn to_unscaled(self, scale: i8) -> Result<i128, String> {
        let (negative, coefficient, exponent) = match self {
            Self::Finite {
                negative,
                coefficient,
                exponent,
            } => (negative, coefficient, exponent),
            Self::Infinity { negative } => {
                return Err(format!(
                    "{}Infinity has no decimal value",
                    if negative { "-" } else { "" }
                ));
            }
            Self::NaN => return Err("NaN has no decimal value".to_owned()),
        };
        let shift = exponent + i32::from(scale);
        let unscaled = if coefficient == 0 {
            Some(0)
        } else if shift >= 0 {
            u32::try_from(shift)
                .ok()
                .and_then(|shift| 10u128.checked_pow(shift))
                .and_then(|factor| coefficient.checked_mul(factor))
                .filter(|&v| v <= MAX_UNSCALED)
        } else {
            // Fewer decimals than the value has: exact only when the dropped digits are zeros.
            u32::try_from(-shift)
                .ok()
                .and_then(|shift| 10u128.checked_pow(shift))
                .filter(|&divisor| coefficient % divisor == 0)
                .map(|divisor| coefficient / divisor)
        };
        let unscaled = unscaled.ok_or_else(|| {
            format!(
                "{} does not fit decimal(38,{scale}) exactly",
                self.display()
            )
        })?;
        let unscaled = unscaled as i128;
        Ok(if negative { -unscaled } else { unscaled })
    }

    /// The value in scientific notation, for messages.
    fn display(&self) -> String {
        match self {
            Self::Finite {
                negative,
                coefficient,
                exponent,
            } => format!(
                "{}{coefficient}E{exponent}",
                if *negative { "-" } else { "" }
            ),
            Self::Infinity { negative } => {
                format!("{}Infinity", if *negative { "-" } else { "" })
            }
            Self::NaN => "NaN".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Bid;
    use mongodb::bson::Decimal128;

    fn bytes_of_hex(hex: &str) -> [u8; 16] {
        let mut bytes = [0u8; 16];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex");
        }
        bytes
    }

    /// Vectors from the BSON specification's decimal128 corpus (the value's 16 bytes, as
    /// stored), with the value they encode read at a scale.
    #[test]
    fn decodes_the_specification_corpus() {
        let cases: [(&str, &str, i8, Result<i128, ()>); 11] = [
            ("1.0", "0A000000000000000000000000003E30", 1, Ok(10)),
            ("0", "00000000000000000000000000004030", 0, Ok(0)),
            ("-0", "000000000000000000000000000040B0", 2, Ok(0)),
            ("0.1", "01000000000000000000000000003E30", 3, Ok(100)),
            ("-1.23E+3", "7B0000000000000000000000000042B0", 0, Err(())),
            (
                "1234567890123456789012345678901234",
                "F2AF967ED05C82DE3297FF6FDE3C4030",
                0,
                Ok(1_234_567_890_123_456_789_012_345_678_901_234),
            ),
            ("1E+3", "01000000000000000000000000004630", 0, Ok(1000)),
            ("1.000", "E8030000000000000000000000003A30", 1, Ok(10)),
            ("1.001", "E9030000000000000000000000003A30", 1, Err(())),
            ("Infinity", "00000000000000000000000000000078", 0, Err(())),
            ("NaN", "0000000000000000000000000000007C", 0, Err(())),
        ];
        for (text, hex, scale, expected) in cases {
            let bytes = bytes_of_hex(hex);
            // The bson crate agrees that these bytes are this value.
            assert_eq!(
                Decimal128::from_bytes(bytes).to_string(),
                text.parse::<Decimal128>().expect(text).to_string(),
                "{text}"
            );
            let got = Bid::decode(bytes).to_unscaled(scale).map_err(|_| ());
            let expected = match (text, expected) {
                ("-1.23E+3", _) => Ok(-1230),
                (_, e) => e,
            };
            assert_eq!(got, expected, "{text} at scale {scale}");
        }
    }

    #[test]
    fn encoding_round_trips_through_the_bson_crate() {
        for (unscaled, scale, text) in [
            (12345i128, 2i8, "123.45"),
            (-5, 0, "-5"),
            (0, 3, "0.000"),
            (1, 10, "1E-10"),
            (10i128.pow(34) - 1, 0, "9999999999999999999999999999999999"),
        ] {
            let bytes = Bid::encode(unscaled, scale).expect("fits");
            assert_eq!(
                Decimal128::from_bytes(bytes).to_string(),
                text.parse::<Decimal128>().expect(text).to_string()
            );
            assert_eq!(Bid::decode(bytes).to_unscaled(scale), Ok(unscaled));
        }
        assert_eq!(Bid::encode(10i128.pow(34), 0), None);
    }

    #[test]
    fn values_beyond_38_digits_are_errors_not_rounded() {
        let huge = Bid::Finite {
            negative: false,
            coefficient: 1,
            exponent: 40,
        };
        assert!(huge.to_unscaled(0).is_err());
        let fine = Bid::Finite {
            negative: true,
            coefficient: 15,
            exponent: -1,
        };
        assert_eq!(fine.to_unscaled(3), Ok(-1500));
        assert!(fine.to_unscaled(0).is_err());
    }
}
