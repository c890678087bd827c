//! Authorisation of client certificates by DN: QEMU's `authz-simple` and `authz-list`.

/// Allow or deny: a rule's verdict, and an [`Authz`] list's default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// The identity may migrate into this destination.
    Allow,
    /// It may not.
    Deny,
}

/// How a rule compares an identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Match {
    /// Byte-for-byte equality (`"format": "exact"`, `g_str_equal`).
    Exact(String),
    /// A glob (`"format": "glob"`, GLib's `g_pattern_match_simple`): `*` is any run of
    /// characters, `?` one character, and there is no escape.
    Glob(String),
}

impl Match {
    fn matches(&self, identity: &str) -> bool {
        match self {
            Match::Exact(s) => s == identity,
            Match::Glob(p) => glob(p, identity),
        }
    }
}

/// One rule of an `authz-list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// What the identity is compared with.
    pub matches: Match,
    /// The verdict when it matches.
    pub policy: Policy,
}

/// Which client certificate DNs may migrate into a destination (QEMU's `tls-authz`).
///
/// The DN is the client certificate's subject in the format QEMU compares (see
/// [`crate::dn`]): `O=Example,CN=source.example`, not `CN=source.example,O=Example`.
/// [`Credentials::own_dn`](crate::Credentials::own_dn) of the client's credentials prints it.
///
/// ```
/// use ramstream_tls::{Authz, Match, Policy, Rule};
///
/// // authz-simple, identity=...: exactly one DN (here a list of them, any of which passes).
/// let simple = Authz::from_identities(["O=Example,CN=source-a", "O=Example,CN=source-b"]);
/// assert!(simple.allows("O=Example,CN=source-b"));
/// assert!(!simple.allows("CN=source-b,O=Example"));
///
/// // authz-list: the first matching rule decides, else the default policy.
/// let list = Authz::list(
///     vec![
///         Rule { matches: Match::Exact("O=Example,CN=retired".into()), policy: Policy::Deny },
///         Rule { matches: Match::Glob("O=Example,CN=*".into()), policy: Policy::Allow },
///     ],
///     Policy::Deny,
/// );
/// assert!(list.allows("O=Example,CN=source-c"));
/// assert!(!list.allows("O=Example,CN=retired"));
/// assert!(!list.allows("O=Other,CN=source-c"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authz {
    rules: Vec<Rule>,
    default: Policy,
}

impl Authz {
    /// Allows exactly these DNs and denies every other: `authz-simple`, generalised to a
    /// list of identities.
    pub fn from_identities<I, S>(identities: I) -> Authz
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Authz {
            rules: identities
                .into_iter()
                .map(|id| Rule {
                    matches: Match::Exact(id.into()),
                    policy: Policy::Allow,
                })
                .collect(),
            default: Policy::Deny,
        }
    }

    /// `authz-list`: the first rule that matches decides; if none does, `default` (QEMU's
    /// `policy` property, whose own default is deny).
    pub fn list(rules: Vec<Rule>, default: Policy) -> Authz {
        Authz { rules, default }
    }

    /// Whether `dn` may migrate into this destination.
    pub fn allows(&self, dn: &str) -> bool {
        let verdict = self
            .rules
            .iter()
            .find(|r| r.matches.matches(dn))
            .map_or(self.default, |r| r.policy);
        verdict == Policy::Allow
    }
}

/// `g_pattern_match_simple`: `*` matches any run of characters (also none), `?` exactly one.
fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and the text position it currently swallows up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs_as_glib() {
        assert!(glob("*", ""));
        assert!(glob("CN=*", "CN=a,b"));
        assert!(glob("O=?,CN=*x", "O=é,CN=yyx"));
        assert!(glob("*a*b*", "xxaYYbzz"));
        assert!(!glob("*a*b", "xxaYYbzz"));
        assert!(!glob("O=?", "O=ab"));
        assert!(glob("a**b", "ab"));
        assert!(!glob("", "a"));
    }
}
