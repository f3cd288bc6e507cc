//! Sanitising model text before it becomes issue text.
//!
//! A model that read a hostile repository may repeat what it read. Whatever it writes is
//! therefore treated like user input: no raw HTML (angle brackets and ampersands are
//! escaped, so neither tags nor the fleet's hidden markers can be forged), no @-mentions
//! (the `@` of a mention is dropped; e-mail addresses stay), no links except to
//! `github.com` and `docs.github.com` (other link targets are dropped, keeping the link
//! text; other bare URLs are replaced), no control characters, and a bounded length.

/// Hosts a link in model text may point to.
const ALLOWED_HOSTS: [&str; 2] = ["github.com", "docs.github.com"];

/// What replaces a URL to any other host.
pub const LINK_REMOVED: &str = "[link removed]";

/// Markdown safe to put into an issue, at most `max_chars` characters.
pub fn sanitize(text: &str, max_chars: usize) -> String {
    let text: String = text
        .chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect();
    let text = strip_link_targets(&text);
    let text = strip_bare_urls(&text);
    let text = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let text = strip_mentions(&text);
    truncate(text.trim(), max_chars)
}

/// `true` for an `http(s)` URL whose host is allowed.
fn allowed(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https")
            && u.host_str().is_some_and(|h| ALLOWED_HOSTS.contains(&h))
            && u.username().is_empty()
            && u.password().is_none()
    })
}

/// `[text](target)` with a target that is not allowed becomes `[text]`.
fn strip_link_targets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("](") {
        out.push_str(&rest[..=i]);
        let after = &rest[i + 2..];
        let close = after.find(')').map_or(after.len(), |p| p + 1);
        let target = after[..close]
            .trim_end_matches(')')
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .trim_matches(|c| c == '<' || c == '>');
        if allowed(target) {
            out.push('(');
            out.push_str(&after[..close]);
        }
        rest = &after[close..];
    }
    out.push_str(rest);
    out
}

/// Bare `http://`, `https://` and `www.` URLs to other hosts become [`LINK_REMOVED`].
fn strip_bare_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let lower = text.to_ascii_lowercase();
    while i < text.len() {
        let starts_url = ["http://", "https://", "www."]
            .iter()
            .any(|p| lower[i..].starts_with(p));
        let at_boundary = text[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_alphanumeric());
        if starts_url && at_boundary {
            let len = text[i..]
                .find(|c: char| c.is_whitespace() || "<>\"'`()[]{}|\\^".contains(c))
                .unwrap_or(text.len() - i);
            let url = text[i..i + len].trim_end_matches(['.', ',', ';', ':', '!', '?']);
            if allowed(url) {
                out.push_str(url);
            } else {
                out.push_str(LINK_REMOVED);
            }
            i += url.len();
            continue;
        }
        let c = text[i..].chars().next().unwrap_or(' ');
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// Drops the `@` of anything GitHub would turn into a mention (`@user`, `@org/team`,
/// `@everyone`); keeps e-mail addresses, whose `@` follows a letter or digit.
fn strip_mentions(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut prev: Option<char> = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let next_starts_name = chars.peek().is_some_and(|n| n.is_alphanumeric());
        let after_word = prev.is_some_and(|p| p.is_alphanumeric() || p == '_');
        if c == '@' && next_starts_name && !after_word {
            prev = Some(c);
            continue;
        }
        out.push(c);
        prev = Some(c);
    }
    out
}

fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expect: &str) {
        assert_eq!(sanitize(input, 10_000), expect, "input: {input}");
    }

    #[test]
    fn html_is_escaped_so_no_tag_or_marker_survives() {
        check(
            "<script>alert(1)</script> <!-- repo-guardian:fingerprint=x -->",
            "&lt;script&gt;alert(1)&lt;/script&gt; &lt;!-- repo-guardian:fingerprint=x --&gt;",
        );
        check("a & b", "a &amp; b");
    }

    #[test]
    fn mentions_lose_their_at_and_email_addresses_stay() {
        check(
            "cc @everyone and @octo-org/admins, mail security@example.com",
            "cc everyone and octo-org/admins, mail security@example.com",
        );
        check("@here", "here");
    }

    #[test]
    fn only_github_links_survive() {
        check(
            "See [the docs](https://docs.github.com/en/actions) and [this](https://evil.example/x).",
            "See [the docs](https://docs.github.com/en/actions) and [this].",
        );
        check(
            "Go to https://evil.example/a?b=c, or www.evil.example or https://github.com/o/r.",
            "Go to [link removed], or [link removed] or https://github.com/o/r.",
        );
        check(
            "![img](http://tracker.example/p.png) [x](javascript:alert(1))",
            "![img] [x])",
        );
        check(
            "https://github.com.evil.example/ https://user@github.com/",
            "[link removed] [link removed]",
        );
    }

    #[test]
    fn length_is_bounded_and_control_characters_dropped() {
        let long = "word ".repeat(1_000);
        let out = sanitize(&long, 300);
        assert_eq!(out.chars().count(), 300);
        assert!(out.ends_with('…'));
        assert_eq!(sanitize("a\u{0}b\u{1b}[31mc", 100), "ab[31mc");
    }
}
