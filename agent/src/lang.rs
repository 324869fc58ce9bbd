//! The language of user-facing text: Japanese for clinic staff, English for
//! everyone else. Chosen by `--lang`, else by `LANG`/`LC_ALL`.

/// A user-facing language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// 日本語
    Ja,
    /// English
    En,
}

impl Lang {
    /// Japanese when `LC_ALL`, `LC_MESSAGES` or `LANG` starts with `ja`, else English.
    pub fn from_env() -> Self {
        let value = ["LC_ALL", "LC_MESSAGES", "LANG"]
            .iter()
            .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
            .unwrap_or_default();
        if value.starts_with("ja") {
            Self::Ja
        } else {
            Self::En
        }
    }

    /// The BCP 47 code (`ja`, `en`), for HTML `lang` and ids.
    pub const fn code(self) -> &'static str {
        match self {
            Self::Ja => "ja",
            Self::En => "en",
        }
    }
}
