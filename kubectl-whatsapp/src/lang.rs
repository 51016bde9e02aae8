//! The language of the plugin's messages: Spanish or English, like the UI.
//!
//! A kubectl user's terminal already says which language they read: kubectl itself (and every
//! gettext program) follows `LC_ALL`, then `LC_MESSAGES`, then `LANG`. The plugin does the same,
//! so `es_AR.UTF-8` gets Spanish and `en_US.UTF-8` English with no flag. Where the locale names
//! neither (unset, `C`, `POSIX`, another language) the product's default applies: Spanish, as in
//! the UI (docs/design.md §5). `--lang` / `KUBECTL_WHATSAPP_LANG` override everything.

use clap::ValueEnum;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    /// Español
    Es,
    /// English
    En,
}

impl Lang {
    /// The Spanish or the English text.
    pub fn pick<'a>(self, es: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::Es => es,
            Lang::En => en,
        }
    }

    /// The language chosen by `flag` (when given), else by the locale variables, read through
    /// `var` (`std::env::var` in the binary) so the choice is testable without the process env.
    pub fn detect(flag: Option<Lang>, var: impl Fn(&str) -> Option<String>) -> Lang {
        if let Some(l) = flag {
            return l;
        }
        // The first non-empty variable decides, as in gettext; it may name neither language.
        let locale = ["LC_ALL", "LC_MESSAGES", "LANG"]
            .iter()
            .filter_map(|k| var(k))
            .find(|v| !v.is_empty());
        match locale.as_deref().map(|l| l.get(..2).unwrap_or(l)) {
            Some("en") => Lang::En,
            _ => Lang::Es,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn follows_the_locale_like_gettext() {
        assert_eq!(
            Lang::detect(None, env(&[("LANG", "en_US.UTF-8")])),
            Lang::En
        );
        assert_eq!(
            Lang::detect(None, env(&[("LANG", "es_AR.UTF-8")])),
            Lang::Es
        );
        // LC_ALL wins over LANG, LC_MESSAGES over LANG
        assert_eq!(
            Lang::detect(
                None,
                env(&[("LANG", "es_ES.UTF-8"), ("LC_ALL", "en_GB.UTF-8")])
            ),
            Lang::En
        );
        assert_eq!(
            Lang::detect(None, env(&[("LANG", "en_US"), ("LC_MESSAGES", "es_MX")])),
            Lang::Es
        );
        // an empty LC_ALL is skipped, as gettext does
        assert_eq!(
            Lang::detect(None, env(&[("LC_ALL", ""), ("LANG", "en_US")])),
            Lang::En
        );
    }

    #[test]
    fn spanish_where_the_locale_names_neither_language() {
        assert_eq!(Lang::detect(None, env(&[])), Lang::Es);
        assert_eq!(Lang::detect(None, env(&[("LANG", "C.UTF-8")])), Lang::Es);
        assert_eq!(Lang::detect(None, env(&[("LANG", "POSIX")])), Lang::Es);
        assert_eq!(
            Lang::detect(None, env(&[("LANG", "fr_FR.UTF-8")])),
            Lang::Es
        );
    }

    #[test]
    fn the_flag_overrides_the_locale() {
        assert_eq!(
            Lang::detect(Some(Lang::Es), env(&[("LANG", "en_US")])),
            Lang::Es
        );
        assert_eq!(Lang::detect(Some(Lang::En), env(&[])), Lang::En);
    }
}
