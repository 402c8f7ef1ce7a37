//! Token utilities: finding `after!` calls and names in token streams that are not
//! parsed (other macros' inputs, a handler that does not parse), and respanning.

use proc_macro2::{Delimiter, Group, Ident, Span, TokenStream, TokenTree};

/// Replaces the input of every `after! <group>` in `tokens`, at any depth, by what
/// `f` returns for it; `f` gets the `after` identifier and the group. The input of an
/// `after!` is left to `f`: it is not searched further.
pub(crate) fn map_after_calls(
    tokens: TokenStream,
    f: &mut dyn FnMut(&Ident, &Group) -> TokenStream,
) -> TokenStream {
    let mut out = Vec::new();
    let mut trees = tokens.into_iter().peekable();
    while let Some(tree) = trees.next() {
        match tree {
            TokenTree::Ident(ident) if ident == "after" => {
                out.push(TokenTree::Ident(ident.clone()));
                if !matches!(trees.peek(), Some(TokenTree::Punct(p)) if p.as_char() == '!') {
                    continue;
                }
                out.push(trees.next().expect("peeked"));
                match trees.next() {
                    Some(TokenTree::Group(group)) => {
                        let input = f(&ident, &group);
                        out.push(regroup(&group, input, group.span()));
                    }
                    Some(other) => out.push(other),
                    None => {}
                }
            }
            TokenTree::Group(group) => {
                let inner = map_after_calls(group.stream(), f);
                out.push(regroup(&group, inner, group.span()));
            }
            other => out.push(other),
        }
    }
    out.into_iter().collect()
}

/// The span of the first use of `name` as a variable in `tokens` (not as a field or
/// method after a `.`), looking inside groups and inline format arguments
/// (`"{headers:?}"`).
pub(crate) fn mention(tokens: &TokenStream, name: &str) -> Option<Span> {
    let mut after_dot = false;
    let inline = [format!("{{{name}}}"), format!("{{{name}:")];
    for tree in tokens.clone() {
        match &tree {
            TokenTree::Ident(ident) if !after_dot && ident == name => return Some(ident.span()),
            TokenTree::Literal(lit) => {
                let text = lit.to_string();
                if text.starts_with('"') && inline.iter().any(|i| text.contains(i.as_str())) {
                    return Some(lit.span());
                }
            }
            TokenTree::Group(group) => {
                if let Some(span) = mention(&group.stream(), name) {
                    return Some(span);
                }
            }
            _ => {}
        }
        after_dot = matches!(&tree, TokenTree::Punct(p) if p.as_char() == '.');
    }
    None
}

/// Whether `tokens` hold a `?` right after an expression (an identifier, a literal or
/// a group: `parse(s)?`, `x.await?`), at any depth; a `?` that starts a value
/// (`tracing::info!(?id)`, `x = ?y`) or a bound (`?Sized`) does not count.
pub(crate) fn has_question_mark(tokens: &TokenStream) -> bool {
    let mut after_operand = false;
    for tree in tokens.clone() {
        match &tree {
            TokenTree::Punct(p) if p.as_char() == '?' && after_operand => return true,
            TokenTree::Group(group) if has_question_mark(&group.stream()) => return true,
            _ => {}
        }
        after_operand = !matches!(tree, TokenTree::Punct(_));
    }
    false
}

/// `tokens` with every token's span set to `span`.
pub(crate) fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tree| {
            if let TokenTree::Group(group) = &tree {
                tree = regroup(group, respan(group.stream(), span), span);
            } else {
                tree.set_span(span);
            }
            tree
        })
        .collect()
}

/// `group`'s delimiter around `stream`, spanned at `span`.
pub(crate) fn regroup(group: &Group, stream: TokenStream, span: Span) -> TokenTree {
    let mut new = Group::new(group.delimiter(), stream);
    new.set_span(span);
    TokenTree::Group(new)
}

/// Whether `item` is a `fn` with a braced body, parsed or not.
pub(crate) fn is_fn_with_body(item: &TokenStream) -> bool {
    let last = item.clone().into_iter().last();
    is_fn(item) && matches!(last, Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Brace)
}

/// Whether `item` holds the `fn` keyword outside its groups.
pub(crate) fn is_fn(item: &TokenStream) -> bool {
    item.clone()
        .into_iter()
        .any(|t| matches!(t, TokenTree::Ident(i) if i == "fn"))
}

/// The span of the item's first token after its attributes, where "this is not a fn"
/// belongs.
pub(crate) fn first_span(item: &TokenStream) -> Span {
    let mut tokens = item.clone().into_iter().peekable();
    while let Some(TokenTree::Punct(p)) = tokens.peek() {
        if p.as_char() != '#' {
            break;
        }
        tokens.next();
        tokens.next(); // the `[...]` group
    }
    tokens.next().map_or_else(Span::call_site, |t| t.span())
}
