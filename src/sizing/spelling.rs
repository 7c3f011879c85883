//! One spelling table per policy enum. The checker reads values with it
//! ([`Spelled::SPELLINGS`], with a did-you-mean), and [`Spelled::as_str`]
//! and `Display` write them with it, so a spelling exists once.

/// A policy enum and its spellings.
pub trait Spelled: Copy + PartialEq + Sized + 'static {
    /// Every value with its spelling, in the order the docs list them.
    const SPELLINGS: &'static [(&'static str, Self)];

    /// The spelling of `self`.
    #[must_use]
    fn as_str(self) -> &'static str {
        Self::SPELLINGS
            .iter()
            .find(|(_, value)| *value == self)
            .map_or("", |(name, _)| name)
    }
}

/// Implements [`Spelled`] and `Display` for an enum from its table.
macro_rules! spelled {
    ($type:ty { $($name:literal => $value:expr),+ $(,)? }) => {
        impl $crate::sizing::spelling::Spelled for $type {
            const SPELLINGS: &'static [(&'static str, Self)] = &[$(($name, $value)),+];
        }

        impl std::fmt::Display for $type {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str($crate::sizing::spelling::Spelled::as_str(*self))
            }
        }
    };
}

pub(crate) use spelled;
