//! The `wire_enum!` macro: open newtypes for wire values.

/// Declares an open newtype over an integer wire value with named constants.
///
/// Unknown values survive a round trip (the type is a plain newtype) and print as hex; known
/// values print their name. Modelled on rustls' `enum_builder!` and gimli's constants.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident($repr:ty) {
            $(
                $(#[$cmeta:meta])*
                $const:ident = $value:expr,
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis struct $name(pub $repr);

        impl $name {
            $(
                $(#[$cmeta])*
                pub const $const: $name = $name($value);
            )*

            /// The name of a known value, `None` for a value this version does not know.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $( x if x == $value => Some(stringify!($const)), )*
                    _ => None,
                }
            }

            /// Whether the value is one this version of the spec names.
            pub const fn is_known(self) -> bool {
                self.name().is_some()
            }
        }

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                match self.name() {
                    Some(n) => write!(f, "{}", n),
                    None => write!(f, "{}({:#x})", stringify!($name), self.0),
                }
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                core::fmt::Debug::fmt(self, f)
            }
        }

        impl From<$repr> for $name {
            fn from(v: $repr) -> Self {
                $name(v)
            }
        }

        impl From<$name> for $repr {
            fn from(v: $name) -> Self {
                v.0
            }
        }
    };
}
