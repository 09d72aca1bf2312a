//! Splits input into SQL statements (ended by `;`) and meta-commands (a line starting with
//! `\`), aware of quotes and comments. The interactive prompt and scripts use the same split.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Sql(String),
    Meta(String),
}

/// The complete items of `text`, and what is left after the last one (an unfinished
/// statement, or only blanks and comments).
pub fn split(text: &str) -> (Vec<Item>, String) {
    let mut items = Vec::new();
    let mut lexer = Lexer::default();
    let mut start = 0;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (at, c) = chars[i];
        if lexer.state == State::Code && !lexer.has_code && c == '\\' {
            // A meta-command runs to the end of its line.
            let end = text[at..].find('\n').map_or(text.len(), |n| at + n);
            items.push(Item::Meta(text[at..end].trim().to_string()));
            start = end;
            while i < chars.len() && chars[i].0 < end {
                i += 1;
            }
            continue;
        }
        let next = chars.get(i + 1).map(|&(_, c)| c);
        let previous = i.checked_sub(1).map(|p| chars[p].1);
        let before_previous = i.checked_sub(2).map(|p| chars[p].1);
        let skip = lexer.step(c, next, previous, before_previous);
        if lexer.state == State::Code && c == ';' && skip == 0 {
            if lexer.has_code {
                items.push(Item::Sql(text[start..at].trim().to_string()));
            }
            start = at + 1;
            lexer = Lexer::default();
        }
        i += 1 + skip;
    }
    let rest = &text[start.min(text.len())..];
    let unterminated = !matches!(lexer.state, State::Code | State::LineComment);
    let rest = if lexer.has_code || unterminated {
        rest.to_string()
    } else {
        String::new()
    };
    (items, rest)
}

/// All items of a script; an unfinished last statement still runs (as `psql -f` does).
pub fn split_script(text: &str) -> Vec<Item> {
    let (mut items, rest) = split(text);
    if !rest.trim().is_empty() {
        items.push(Item::Sql(rest.trim().to_string()));
    }
    items
}

/// Whether the prompt input is ready to run: it ends with a finished statement or command.
pub fn is_complete(text: &str) -> bool {
    let (items, rest) = split(text);
    !items.is_empty() && rest.is_empty()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    #[default]
    Code,
    /// Inside '…'; `true` for E'…' where backslash escapes.
    SingleQuote(bool),
    DoubleQuote,
    Backtick,
    LineComment,
    BlockComment(u32),
}

#[derive(Debug, Default)]
struct Lexer {
    state: State,
    /// Whether the current statement has anything besides blanks and comments.
    has_code: bool,
}

impl Lexer {
    /// Advances over `c`; returns how many following characters were consumed too.
    fn step(
        &mut self,
        c: char,
        next: Option<char>,
        previous: Option<char>,
        before_previous: Option<char>,
    ) -> usize {
        match self.state {
            State::Code => match c {
                '-' if next == Some('-') => {
                    self.state = State::LineComment;
                    1
                }
                '/' if next == Some('*') => {
                    self.state = State::BlockComment(1);
                    1
                }
                '\'' => {
                    let escaped = matches!(previous, Some('e' | 'E'))
                        && !before_previous.is_some_and(|p| p.is_alphanumeric() || p == '_');
                    self.state = State::SingleQuote(escaped);
                    self.has_code = true;
                    0
                }
                '"' => {
                    self.state = State::DoubleQuote;
                    self.has_code = true;
                    0
                }
                '`' => {
                    self.state = State::Backtick;
                    self.has_code = true;
                    0
                }
                ';' => 0,
                c if c.is_whitespace() => 0,
                _ => {
                    self.has_code = true;
                    0
                }
            },
            State::SingleQuote(escaped) => match c {
                '\\' if escaped => 1,
                '\'' if next == Some('\'') => 1,
                '\'' => {
                    self.state = State::Code;
                    0
                }
                _ => 0,
            },
            State::DoubleQuote => {
                if c == '"' {
                    if next == Some('"') {
                        return 1;
                    }
                    self.state = State::Code;
                }
                0
            }
            State::Backtick => {
                if c == '`' {
                    self.state = State::Code;
                }
                0
            }
            State::LineComment => {
                if c == '\n' {
                    self.state = State::Code;
                }
                0
            }
            State::BlockComment(depth) => match c {
                '*' if next == Some('/') => {
                    self.state = if depth == 1 {
                        State::Code
                    } else {
                        State::BlockComment(depth - 1)
                    };
                    1
                }
                '/' if next == Some('*') => {
                    self.state = State::BlockComment(depth + 1);
                    1
                }
                _ => 0,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql(text: &str) -> Item {
        Item::Sql(text.to_string())
    }

    #[test]
    fn splits_on_semicolons_outside_quotes_and_comments() {
        let (items, rest) =
            split("SELECT 'a;b', \"c;d\" FROM t; -- x; y\nSELECT /* ; */ 2;\nSELECT E'it\\'s;' ;");
        assert_eq!(
            items,
            vec![
                sql("SELECT 'a;b', \"c;d\" FROM t"),
                sql("-- x; y\nSELECT /* ; */ 2"),
                sql("SELECT E'it\\'s;'"),
            ]
        );
        assert_eq!(rest, "");
    }

    #[test]
    fn doubled_quotes_stay_inside_the_literal() {
        let (items, rest) = split("SELECT 'it''s; fine'; SELECT 1");
        assert_eq!(items, vec![sql("SELECT 'it''s; fine'")]);
        assert_eq!(rest, " SELECT 1");
        assert!(!is_complete("SELECT 'open;"));
        assert!(is_complete("SELECT 1;\n  "));
        assert!(!is_complete("SELECT 1; SELECT"));
    }

    #[test]
    fn meta_commands_end_at_the_line_end() {
        let (items, rest) = split("\\dt pg.*\nSELECT 1;\n\\q");
        assert_eq!(
            items,
            vec![
                Item::Meta("\\dt pg.*".into()),
                sql("SELECT 1"),
                Item::Meta("\\q".into())
            ]
        );
        assert_eq!(rest, "");
        // A backslash inside a statement is no command.
        assert_eq!(split("SELECT '\\x';").0, vec![sql("SELECT '\\x'")]);
    }

    #[test]
    fn comments_and_blanks_alone_are_no_statement() {
        assert_eq!(
            split("  -- only a comment\n ; /* x */ ;"),
            (vec![], String::new())
        );
        assert!(!is_complete("-- nothing"));
        assert_eq!(
            split_script("SELECT 1; SELECT 2"),
            vec![sql("SELECT 1"), sql("SELECT 2")]
        );
        assert_eq!(
            split_script("/* unterminated"),
            vec![sql("/* unterminated")]
        );
        assert_eq!(split_script("SELECT 1; -- the end"), vec![sql("SELECT 1")]);
    }
}
