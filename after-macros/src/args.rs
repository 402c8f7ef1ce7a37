//! The arguments of `#[with_after(...)]`.

use proc_macro2::TokenStream;
use syn::parse::Parser;
use syn::{LitStr, Path};

/// What `#[with_after(...)]` accepts, listed in error messages.
const ACCEPTED: &str = "`crate = \"path\"`";

/// Parsed attribute arguments.
pub(crate) struct Args {
    /// The path generated code uses to reach the runtime crate.
    pub(crate) krate: Path,
    /// `__not_rewritten`: the item is the fallback `after!`'s block, not a handler
    /// (see `fallback.rs`).
    pub(crate) not_rewritten: bool,
}

impl Args {
    pub(crate) fn parse(tokens: TokenStream) -> syn::Result<Self> {
        let mut krate: Option<Path> = None;
        let mut not_rewritten = false;
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("crate") {
                if krate.is_some() {
                    return Err(meta.error("duplicate `crate` argument"));
                }
                let lit: LitStr = meta.value()?.parse()?;
                krate = Some(lit.parse()?);
                Ok(())
            } else if meta.path.is_ident("__not_rewritten") {
                not_rewritten = true;
                Ok(())
            } else {
                Err(meta.error(format_args!(
                    "unknown `#[with_after]` argument; the accepted argument is {ACCEPTED}"
                )))
            }
        });
        parser.parse2(tokens)?;
        Ok(Args {
            krate: krate.unwrap_or_else(|| syn::parse_quote!(::after_runtime)),
            not_rewritten,
        })
    }
}
