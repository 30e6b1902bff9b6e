//! Just enough PromQL reading for the fleet test: an alert's threshold comparison split from
//! the expression it compares, and the series selectors an expression reads.

/// An alert expression of the shape `LHS OP NUMBER`.
#[derive(Debug, PartialEq)]
pub struct Threshold<'a> {
    pub lhs: &'a str,
    pub op: &'a str,
    pub value: f64,
}

/// Comparison operators, two-character ones first so that `>=` is not read as `>`.
const COMPARISONS: [&str; 6] = ["==", "!=", ">=", "<=", ">", "<"];

/// Split `expr` at its one comparison outside any brackets and string. Label matchers
/// (`{a!="b"}`) and comparisons inside brackets belong to the left-hand side. An expression
/// with no such comparison, more than one, or no plain number on the right is an error.
pub fn split_threshold(expr: &str) -> Result<Threshold<'_>, String> {
    let found = top_level_comparisons(expr);
    let [(at, op)] = found.as_slice() else {
        return Err(format!("not `EXPRESSION OP NUMBER` (top-level comparisons: {found:?}): {expr}"));
    };
    let rhs = expr[at + op.len()..].trim();
    let value = rhs.parse().map_err(|_| format!("right of `{op}` is not a number but `{rhs}`: {expr}"))?;
    Ok(Threshold { lhs: expr[..*at].trim(), op, value })
}

/// Byte offsets and operators of the comparisons at bracket depth 0 outside strings.
fn top_level_comparisons(expr: &str) -> Vec<(usize, &'static str)> {
    let bytes = expr.as_bytes();
    let mut found = Vec::new();
    let mut depth = 0i32;
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if let Some(q) = quote {
            if b == b'\\' {
                i += 1;
            } else if b == q {
                quote = None;
            }
        } else if matches!(b, b'"' | b'\'' | b'`') {
            quote = Some(b);
        } else if matches!(b, b'(' | b'[' | b'{') {
            depth += 1;
        } else if matches!(b, b')' | b']' | b'}') {
            depth -= 1;
        } else if depth == 0 {
            if let Some(op) = COMPARISONS.iter().find(|op| expr[i..].starts_with(**op)) {
                found.push((i, *op));
                i += op.len();
                continue;
            }
        }
        i += 1;
    }
    found
}

/// Words that are followed by a label list in brackets, not by an expression.
const LABEL_LIST_KEYWORDS: [&str; 6] = ["by", "without", "on", "ignoring", "group_left", "group_right"];
/// Aggregations, which may put a `by (…)` between their name and their argument.
const AGGREGATIONS: [&str; 12] = ["sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile"];
/// Binary operators and modifiers spelled as words.
const WORD_OPERATORS: [&str; 5] = ["and", "or", "unless", "bool", "offset"];

/// Every series selector in `expr` (`metric` or `metric{matchers}`), in order: what must
/// exist for each part of the expression to have data. An `a or b` has data when `a` alone
/// does; its selectors tell whether `b` would too.
pub fn vector_selectors(expr: &str) -> Vec<String> {
    let bytes = expr.as_bytes();
    let mut selectors = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if matches!(b, b'"' | b'\'' | b'`') {
            i = string_end(bytes, i);
        } else if b == b'[' {
            // A range or subquery duration.
            i = closing(bytes, i);
        } else if b.is_ascii_digit() {
            // A number, with its exponent or unit letters.
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.') {
                i += 1;
            }
        } else if b.is_ascii_alphabetic() || b == b'_' || b == b':' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'_' | b':')) {
                i += 1;
            }
            let word = &expr[start..i];
            let next = expr[i..].trim_start();
            let at_next = i + (expr.len() - i - next.len());
            if LABEL_LIST_KEYWORDS.contains(&word) && next.starts_with('(') {
                i = closing(bytes, at_next);
            } else if next.starts_with('(') || AGGREGATIONS.contains(&word) || WORD_OPERATORS.contains(&word) {
                // A function or aggregation (its arguments are read next), or an operator.
            } else if next.starts_with('{') {
                i = closing(bytes, at_next);
                selectors.push(format!("{word}{}", &expr[at_next..i]));
            } else {
                selectors.push(word.to_string());
            }
        } else {
            i += 1;
        }
    }
    selectors
}

/// The offset just past the string literal that starts at `at`.
fn string_end(bytes: &[u8], at: usize) -> usize {
    let quote = bytes[at];
    let mut i = at + 1;
    while i < bytes.len() && bytes[i] != quote {
        i += if bytes[i] == b'\\' { 2 } else { 1 };
    }
    i + 1
}

/// The offset just past the bracket that closes the one at `at`, strings skipped.
fn closing(bytes: &[u8], at: usize) -> usize {
    let mut depth = 0;
    let mut i = at;
    while i < bytes.len() {
        match bytes[i] {
            b'"' | b'\'' | b'`' => {
                i = string_end(bytes, i);
                continue;
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threshold_is_split_off_and_matchers_stay_in_the_expression() {
        let t = split_threshold(r#"sum by (i) (increase(x{a!="b",c=~"d|e"}[5m])) > 0"#).unwrap();
        assert_eq!(t, Threshold { lhs: r#"sum by (i) (increase(x{a!="b",c=~"d|e"}[5m]))"#, op: ">", value: 0.0 });
        assert_eq!(split_threshold(r#"up{job="rsttrace"} == 0"#).unwrap().op, "==");
        assert_eq!(split_threshold("(a or b) >= 10").unwrap(), Threshold { lhs: "(a or b)", op: ">=", value: 10.0 });
    }

    #[test]
    fn comparisons_in_strings_and_brackets_are_not_the_threshold() {
        let t = split_threshold(r#"count(x{l=">"} > 1) < 2"#).unwrap();
        assert_eq!((t.lhs, t.op), (r#"count(x{l=">"} > 1)"#, "<"));
    }

    #[test]
    fn other_shapes_are_refused() {
        assert!(split_threshold("rate(x[5m])").is_err(), "no comparison");
        assert!(split_threshold("a > 1 and b > 2").is_err(), "two comparisons");
        assert!(split_threshold("a > b").is_err(), "no number on the right");
    }

    #[test]
    fn selectors_are_found_in_every_branch_and_labels_lists_are_not_selectors() {
        let expr = r#"(sum by (instance, cause) (increase(a_total{cause=~"x|y"}[5m])) or sum without (comm) (rate(b{c="}"}[1m] offset 5m))) > 1e3"#;
        assert_eq!(vector_selectors(expr), [r#"a_total{cause=~"x|y"}"#, r#"b{c="}"}"#]);
        assert_eq!(vector_selectors(r#"topk(10, sum(x:rate5m) by (comm)) + 1 - up{job="r"} == 0"#), ["x:rate5m", r#"up{job="r"}"#]);
        assert_eq!(vector_selectors("sum(1 - up)"), ["up"]);
    }
}
