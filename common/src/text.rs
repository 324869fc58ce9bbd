//! Which characters may appear in certificate subject text that the product
//! shows (`cert status`, the carrier console, logs) or matches on (the
//! institution code, the unit).
//!
//! A control character (NUL included) in a common name is dropped or
//! rendered differently by each viewer, so two different names can look the
//! same, and a bidirectional override makes a name read in another order.
//! Both sides refuse such text: the device at import, the carrier where it
//! signs a CSR and where it reads a client certificate.

/// Bidirectional formatting characters: they reorder what follows when shown.
const BIDI_CONTROLS: [char; 12] = [
    '\u{061C}', '\u{200E}', '\u{200F}', '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}',
    '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
];

/// A character refused in subject text, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlChar {
    /// The character.
    pub found: char,
    /// Its position, in characters from 0.
    pub position: usize,
}

impl std::fmt::Display for ControlChar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "control character U+{:04X} at position {}", u32::from(self.found), self.position)
    }
}

/// The first control (Unicode `Cc`: C0, DEL, C1) or bidirectional
/// formatting character of `text`, if any.
pub fn first_control(text: &str) -> Option<ControlChar> {
    text.chars()
        .enumerate()
        .find(|(_, c)| c.is_control() || BIDI_CONTROLS.contains(c))
        .map(|(position, found)| ControlChar { found, position })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_bidi_characters_are_found_with_their_position() {
        assert_eq!(first_control("さくら医院 1312345678"), None);
        assert_eq!(first_control("main\0ward2"), Some(ControlChar { found: '\0', position: 4 }));
        for c in ['\t', '\n', '\u{1b}', '\u{7f}', '\u{85}', '\u{9b}', '\u{202e}', '\u{2066}'] {
            let found = first_control(&format!("ab{c}")).unwrap();
            assert_eq!((found.found, found.position), (c, 2), "{c:?}");
        }
        assert_eq!(first_control("医\u{0}").unwrap().to_string(), "control character U+0000 at position 1");
    }
}
