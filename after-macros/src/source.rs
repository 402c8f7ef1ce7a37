//! Which outer attributes a source file writes on each `fn`, and where each body is.
//!
//! The token stream an attribute receives says nothing of the attributes above it.
//! This is needed for one diagnostic only: `#[with_after]` written below
//! `#[axum::debug_handler]`, which copies the handler before `#[with_after]` runs (see
//! `order.rs`). A small lexer is enough for that: it knows comments, string, char
//! and raw string literals and lifetimes, so their contents are not taken for code,
//! and tracks delimiters to pair each `fn` with its attributes and its body.

use proc_macro2::{LineColumn, Span};

/// An outer attribute: the last segment of its path (`debug_handler` for
/// `#[axum::debug_handler]`) and where its `#` is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attr {
    pub(crate) name: String,
    pub(crate) at: LineColumn,
}

/// A `fn` with a body: its outer attributes in source order, and where its body's
/// braces are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FnItem {
    pub(crate) attrs: Vec<Attr>,
    pub(crate) open: LineColumn,
    pub(crate) close: LineColumn,
}

impl FnItem {
    /// Whether `at` lies inside the body's braces.
    pub(crate) fn contains(&self, at: LineColumn) -> bool {
        self.open < at && at < self.close
    }
}

/// The `fn`s of the file `span` is in; none if it cannot be read (code written by a
/// macro, an IDE's expansion).
pub(crate) fn fns_in_file_of(span: Span) -> Vec<FnItem> {
    span.local_file()
        .and_then(|path| std::fs::read_to_string(path).ok())
        .map(|src| fns(&src))
        .unwrap_or_default()
}

/// Every `fn` with a body in `src`, nested ones included, each before the ones it
/// contains.
pub(crate) fn fns(src: &str) -> Vec<FnItem> {
    let tokens = Lexer::new(src).tokens();
    Items::default().read(&tokens)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Ident(String),
    Punct(char),
    Open(char),
    Close,
    /// A literal or a lifetime: nothing inside it matters.
    Other,
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    at: LineColumn,
}

/// Lines count from 1, columns from 0 in characters, as `proc_macro2` reports them.
struct Lexer {
    chars: Vec<char>,
    i: usize,
    line: usize,
    column: usize,
}

impl Lexer {
    fn new(src: &str) -> Self {
        Lexer {
            chars: src.chars().collect(),
            i: 0,
            line: 1,
            column: 0,
        }
    }

    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.i + ahead).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek(0)?;
        self.i += 1;
        if c == '\n' {
            self.line += 1;
            self.column = 0;
        } else if c != '\r' {
            self.column += 1;
        }
        Some(c)
    }

    fn at(&self) -> LineColumn {
        LineColumn {
            line: self.line,
            column: self.column,
        }
    }

    fn tokens(mut self) -> Vec<Token> {
        let mut tokens = Vec::new();
        while let Some(c) = self.peek(0) {
            let at = self.at();
            let kind = match c {
                c if c.is_whitespace() => {
                    self.bump();
                    continue;
                }
                '/' if self.peek(1) == Some('/') => {
                    while self.peek(0).is_some_and(|c| c != '\n') {
                        self.bump();
                    }
                    continue;
                }
                '/' if self.peek(1) == Some('*') => {
                    self.block_comment();
                    continue;
                }
                '"' => {
                    self.string();
                    Kind::Other
                }
                '\'' => {
                    self.quote();
                    Kind::Other
                }
                c if c.is_ascii_digit() => {
                    self.number();
                    Kind::Other
                }
                c if c == '_' || c.is_alphabetic() => self.ident_or_prefixed_literal(),
                '(' | '[' | '{' => {
                    self.bump();
                    Kind::Open(c)
                }
                ')' | ']' | '}' => {
                    self.bump();
                    Kind::Close
                }
                c => {
                    self.bump();
                    Kind::Punct(c)
                }
            };
            tokens.push(Token { kind, at });
        }
        tokens
    }

    fn block_comment(&mut self) {
        let mut depth = 0;
        while let Some(c) = self.bump() {
            match (c, self.peek(0)) {
                ('/', Some('*')) => {
                    self.bump();
                    depth += 1;
                }
                ('*', Some('/')) => {
                    self.bump();
                    depth -= 1;
                    if depth == 0 {
                        return;
                    }
                }
                _ => {}
            }
        }
    }

    /// A `"..."` string, from its opening quote.
    fn string(&mut self) {
        self.bump();
        while let Some(c) = self.bump() {
            match c {
                '\\' => {
                    self.bump();
                }
                '"' => return,
                _ => {}
            }
        }
    }

    /// A raw string from its `#`s or opening quote: `#"..."#`.
    fn raw_string(&mut self) {
        let mut hashes = 0;
        while self.peek(0) == Some('#') {
            self.bump();
            hashes += 1;
        }
        self.bump(); // the opening quote
        while let Some(c) = self.bump() {
            if c == '"' && (0..hashes).all(|k| self.peek(k) == Some('#')) {
                for _ in 0..hashes {
                    self.bump();
                }
                return;
            }
        }
    }

    /// A char literal (`'a'`, `'\n'`) or a lifetime (`'a`), from the quote.
    fn quote(&mut self) {
        self.bump();
        match (self.peek(0), self.peek(1)) {
            (Some('\\'), _) => {
                while let Some(c) = self.bump() {
                    if c == '\'' {
                        return;
                    }
                    if c == '\\' {
                        self.bump();
                    }
                }
            }
            (Some(_), Some('\'')) => {
                self.bump();
                self.bump();
            }
            _ => {
                self.ident_chars();
            }
        }
    }

    fn number(&mut self) {
        loop {
            self.ident_chars();
            let fraction =
                self.peek(0) == Some('.') && self.peek(1).is_some_and(|c| c.is_ascii_digit());
            if !fraction {
                return;
            }
            self.bump();
        }
    }

    fn ident_chars(&mut self) -> String {
        let mut ident = String::new();
        while let Some(c) = self.peek(0).filter(|&c| c == '_' || c.is_alphanumeric()) {
            ident.push(c);
            self.bump();
        }
        ident
    }

    /// An identifier, or a literal with a prefix: `b"..."`, `r#"..."#`, `b'x'`; a raw
    /// identifier `r#name` is an identifier.
    fn ident_or_prefixed_literal(&mut self) -> Kind {
        let ident = self.ident_chars();
        let raw_prefix = matches!(ident.as_str(), "r" | "br" | "cr");
        match self.peek(0) {
            Some('"') if raw_prefix => self.raw_string(),
            Some('#') if raw_prefix && matches!(self.peek(1), Some('#' | '"')) => self.raw_string(),
            Some('#') if ident == "r" => {
                self.bump();
                return Kind::Ident(self.ident_chars());
            }
            Some('"') if matches!(ident.as_str(), "b" | "c") => self.string(),
            Some('\'') if ident == "b" => self.quote(),
            _ => return Kind::Ident(ident),
        }
        Kind::Other
    }
}

/// Pairs `fn`s with the attributes before them and the braces after them.
#[derive(Default)]
struct Items {
    /// The open delimiters, each with the index in `found` of the `fn` whose body it
    /// opens, if it does.
    open: Vec<(char, Option<usize>)>,
    /// Outer attributes read since the last `;`, `{` or `}`.
    attrs: Vec<Attr>,
    /// A `fn` whose body has not opened yet, with the depth it was written at.
    pending: Option<(Vec<Attr>, usize)>,
    found: Vec<FnItem>,
}

impl Items {
    fn read(mut self, tokens: &[Token]) -> Vec<FnItem> {
        let mut i = 0;
        while let Some(token) = tokens.get(i) {
            i += 1;
            match &token.kind {
                Kind::Punct('#') => i = self.attribute(tokens, i, token.at),
                Kind::Ident(fn_) if fn_ == "fn" => self.fn_keyword(),
                Kind::Open(delimiter) => self.open(*delimiter, token.at),
                Kind::Close => self.close(token.at),
                Kind::Punct(';') => {
                    self.attrs.clear();
                    if self
                        .pending
                        .as_ref()
                        .is_some_and(|(_, depth)| *depth == self.open.len())
                    {
                        self.pending = None;
                    }
                }
                _ => {}
            }
        }
        self.found
    }

    /// Reads the attribute whose `#` is at `at`; `i` is past the `#`. Returns where
    /// reading goes on. Inner attributes (`#![...]`) are skipped.
    fn attribute(&mut self, tokens: &[Token], mut i: usize, at: LineColumn) -> usize {
        let inner = matches!(
            tokens.get(i),
            Some(Token {
                kind: Kind::Punct('!'),
                ..
            })
        );
        if inner {
            i += 1;
        }
        if !matches!(
            tokens.get(i),
            Some(Token {
                kind: Kind::Open('['),
                ..
            })
        ) {
            return i;
        }
        i += 1;
        let mut name = None;
        let mut path = true;
        let mut depth = 1;
        while let Some(token) = tokens.get(i) {
            i += 1;
            match &token.kind {
                Kind::Ident(ident) if path => name = Some(ident.clone()),
                Kind::Punct(':') if path => {}
                Kind::Open(_) => {
                    depth += 1;
                    path = false;
                }
                Kind::Close => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => path = false,
            }
        }
        if let (false, Some(name)) = (inner, name) {
            self.attrs.push(Attr { name, at });
        }
        i
    }

    /// A `fn` in item or statement position (not a `fn(u8)` type in a signature)
    /// takes the attributes read before it.
    fn fn_keyword(&mut self) {
        if matches!(self.open.last(), None | Some(('{', _))) {
            self.pending = Some((std::mem::take(&mut self.attrs), self.open.len()));
        }
    }

    fn open(&mut self, delimiter: char, at: LineColumn) {
        let mut body = None;
        if delimiter == '{' {
            self.attrs.clear();
            if self
                .pending
                .as_ref()
                .is_some_and(|(_, depth)| *depth == self.open.len())
            {
                let (attrs, _) = self.pending.take().expect("checked");
                body = Some(self.found.len());
                self.found.push(FnItem {
                    attrs,
                    open: at,
                    close: at,
                });
            }
        }
        self.open.push((delimiter, body));
    }

    fn close(&mut self, at: LineColumn) {
        if let Some((delimiter, body)) = self.open.pop() {
            if delimiter == '{' {
                self.attrs.clear();
            }
            if let Some(index) = body {
                self.found[index].close = at;
            }
        }
        if self
            .pending
            .as_ref()
            .is_some_and(|(_, depth)| *depth > self.open.len())
        {
            self.pending = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: usize, column: usize) -> LineColumn {
        LineColumn { line, column }
    }

    fn names(item: &FnItem) -> Vec<&str> {
        item.attrs.iter().map(|a| a.name.as_str()).collect()
    }

    #[test]
    fn pairs_each_fn_with_its_attributes_and_body() {
        let src = "\
#[axum::debug_handler]
#[with_after]
pub(crate) async fn handler(x: [u8; 2], f: fn(u8)) -> Result<(), ()> {
    #[allow(unused)] fn nested() {}
    let g: fn() = nested;
    if true { Ok(()) } else { Err(()) }
}
";
        let found = fns(src);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(names(&found[0]), ["debug_handler", "with_after"]);
        assert_eq!(found[0].attrs[1].at, at(2, 0));
        assert_eq!((found[0].open, found[0].close), (at(3, 69), at(7, 0)));
        assert_eq!(names(&found[1]), ["allow"]);
        assert!(found[0].contains(at(6, 4)) && !found[1].contains(at(6, 4)));
    }

    #[test]
    fn literals_and_comments_are_not_code() {
        let src = r####"
fn a() {
    let s = "} #[debug_handler] fn x() {";
    let r = r#"}"#; let b = b'}'; let c = '}'; let l: &'static str = "";
    // }
    /* } /* nested */ } */
    let n = 1.5e3;
}
#[b] fn z() {}
"####;
        let found = fns(src);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!((found[0].open.line, found[0].close.line), (2, 8));
        assert_eq!(names(&found[1]), ["b"]);
    }

    #[test]
    fn attributes_before_other_items_do_not_reach_a_later_fn() {
        let src = "#[derive(Debug)] struct S { f: fn() }\n#![allow(x)]\n#[cfg(x)] const C: u8 = 1;\nfn f() {}";
        let found = fns(src);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].attrs.is_empty());
    }
}
