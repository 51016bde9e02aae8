//! Admission rules (CEL `x-kubernetes-validations`) shared by several fields: what the product
//! cannot run, or the Rust types cannot read, is refused by the API server with a message that
//! says what to write instead (docs/design.md §2, issue 28).
use kube::core::{Message, Rule};

/// The latest time any time field may hold. The Rust types cannot read every time the API
/// server accepts: a `date-time` goes up to 9999-12-31T23:59:59Z, k8s-openapi's `Time` (jiff)
/// stops at 9999-12-30T22:00:00Z, and an object with one unreadable field is unreadable as a
/// whole (the operator never reconciled it, the hub dropped it from every list). Every writer
/// puts "now" in these fields; a time decades ahead is a typo or an attack, so the bound is
/// far from both the present and the parser's limit.
pub const TIME_LIMIT: &str = "2100-01-01T00:00:00Z";

/// A time field before [`TIME_LIMIT`] (in CEL, a `date-time` string is a timestamp).
pub fn time_before_limit() -> Rule {
    Rule::new(format!("self < timestamp('{TIME_LIMIT}')")).message(Message::Message(format!(
        "must be a time before {TIME_LIMIT}"
    )))
}

/// The highest `spec.messaging.sendRatePerMinute`: one a second is already far beyond what
/// WhatsApp tolerates from one number for long.
pub const MAX_SEND_RATE_PER_MINUTE: i64 = 60;

/// The highest `spec.messaging.sendBurst`.
pub const MAX_SEND_BURST: i64 = 10;

/// An integer field between `min` and `max`, saying so by name.
pub fn int_between(field: &str, min: i64, max: i64) -> Rule {
    Rule::new(format!("self >= {min} && self <= {max}")).message(Message::Message(format!(
        "{field} must be between {min} and {max}"
    )))
}

/// Upper bounds of the session container's resources, by the only resource names it may use.
/// Far above what a session needs (Chromium with one page: under 1 CPU and ~500 MiB), so they
/// only refuse what no session should get and what a wrong unit makes (`1Ei`, `32000` cores). `ephemeral-storage` is allowed: the session's `/tmp` and Chromium's caches are
/// emptyDirs on the node's disk, which a limit bounds.
pub const RESOURCE_LIMITS: [(&str, &str); 3] = [
    ("cpu", "32"),
    ("memory", "64Gi"),
    ("ephemeral-storage", "100Gi"),
];

/// The smallest memory limit: Chromium and the agent cannot start in less, and a bare number
/// is bytes (`memory: 512` is 512 bytes, a container that is OOM-killed in a loop).
pub const MIN_MEMORY_LIMIT: &str = "128Mi";

/// The largest profile volume (`spec.storage.size`): a Chromium profile is a few hundred MiB;
/// the bound refuses sizes no storage class provides (`999999999999999Ei` was accepted and
/// bound) while leaving room for classes whose speed grows with size.
pub const MAX_STORAGE: &str = "1Ti";

/// CEL for "the resource names of this requests/limits map are ones a session may use". The
/// message is static: a message expression over the map's keys (strings of any length) is
/// beyond the API server's cost budget.
pub fn resource_names() -> Rule {
    let names: Vec<String> = RESOURCE_LIMITS
        .iter()
        .map(|(n, _)| format!("'{n}'"))
        .collect();
    Rule::new(format!("self.all(k, k in [{}])", names.join(", "))).message(
        "unsupported resource name: a session container uses only cpu, memory and ephemeral-storage",
    )
}

/// The value of resource `k` of a requests/limits map as a quantity (an int-or-string value).
fn q(map: &str, k: &str) -> String {
    format!("quantity(string({map}[{k}]))")
}

/// CEL guard: `k`'s value parses as a quantity (the schema's pattern reports the ones that do
/// not; the rules below must not fail at run time on them).
fn is_q(map: &str, k: &str) -> String {
    format!("isQuantity(string({map}[{k}]))")
}

/// No negative quantity in a requests/limits map.
pub fn resources_not_negative() -> Rule {
    Rule::new(format!(
        "self.all(k, !{} || !{}.isLessThan(quantity('0')))",
        is_q("self", "k"),
        q("self", "k")
    ))
    .message("resource quantities must not be negative")
}

/// Each named resource of a requests/limits map at most its [`RESOURCE_LIMITS`] bound.
pub fn resources_at_most() -> Vec<Rule> {
    RESOURCE_LIMITS
        .iter()
        .map(|(name, max)| {
            let k = format!("'{name}'");
            Rule::new(format!(
                "!({k} in self) || !{} || {}.compareTo(quantity('{max}')) <= 0",
                is_q("self", &k),
                q("self", &k)
            ))
            .message(Message::Message(format!("{name} must be at most {max}")))
        })
        .collect()
}

/// `limits.memory`, when set, at least [`MIN_MEMORY_LIMIT`].
pub fn memory_limit_at_least() -> Rule {
    let k = "'memory'";
    Rule::new(format!(
        "!({k} in self) || !{} || {}.compareTo(quantity('{MIN_MEMORY_LIMIT}')) >= 0",
        is_q("self", k),
        q("self", k)
    ))
    .message(Message::Message(format!(
        "memory limit must be at least {MIN_MEMORY_LIMIT}: Chromium cannot start in less (a bare number is bytes; write e.g. 512Mi)"
    )))
}

/// On `resources`: each request at most the limit of the same resource (the API server would
/// refuse the session's pod otherwise, on every reconcile, far from the user's edit). One rule
/// per resource, so the message names it.
pub fn requests_within_limits() -> Vec<Rule> {
    RESOURCE_LIMITS
        .iter()
        .map(|(name, _)| {
            let k = format!("'{name}'");
            Rule::new(format!(
                "!has(self.requests) || !has(self.limits) || !({k} in self.requests) || !({k} in self.limits) || !{} || !{} || {}.compareTo({}) <= 0",
                is_q("self.requests", &k),
                is_q("self.limits", &k),
                q("self.requests", &k),
                q("self.limits", &k)
            ))
            .message(Message::Message(format!(
                "requests.{name} must not exceed limits.{name}"
            )))
        })
        .collect()
}

/// `spec.storage.size`: a positive quantity of at most [`MAX_STORAGE`].
pub fn storage_size() -> Rule {
    Rule::new(format!(
        "isQuantity(self) && quantity(self).isGreaterThan(quantity('0')) && quantity(self).compareTo(quantity('{MAX_STORAGE}')) <= 0"
    ))
    .message(Message::Message(format!(
        "size must be a positive quantity of at most {MAX_STORAGE}, such as 1Gi or 500Mi"
    )))
}

/// A port, 1 to 65535, as a regular expression.
const PORT: &str =
    "([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])";

/// `spec.proxy.url`'s shape: scheme, host (a name, an IPv4 address or a bracketed IPv6 one) and
/// an explicit port, nothing else (credentials come from `credentialsSecretRef`). An explicit
/// port because each scheme's default differs between Chromium and the NetworkPolicy the chart
/// makes for the proxy (`networkPolicy.proxy.ports`).
pub fn proxy_url_shape() -> Rule {
    Rule::new(format!("self.matches('{}')", proxy_url_pattern()))
        .message("proxy url must look like http://host:port, https://host:port or socks5://host:port with an explicit port (1-65535), without credentials or a path")
}

fn proxy_url_pattern() -> String {
    format!(r"^(http|https|socks5)://(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9.-]+):{PORT}/?$")
}

/// `spec.proxy.url`'s host: an address a session pod can reach as a proxy, never its own
/// loopback or the node's link-local services (cloud metadata at 169.254.169.254). An IP must
/// be a unicast address other than loopback, link-local and unspecified (CEL's
/// `isGlobalUnicast`: private ranges are allowed, in-cluster proxies live there); a host whose
/// last label starts with a digit must be such an IP in canonical form (Chromium reads
/// `2130706433`, `0x7f.1` or `127.1` as IPv4 addresses); a name must not be `localhost`,
/// `*.localhost` or the GCE metadata name. Names are checked as written: what they resolve to
/// is the NetworkPolicy's business (`networkPolicy.proxy`).
///
/// The host is cut out of the URL with string functions (after the shape rule's pattern, which
/// this rule assumes): CEL's `url()` would do it, but the API server cannot bound the cost of
/// what it returns and refuses the rule.
pub fn proxy_url_host() -> Rule {
    // "host:port[/]" after the scheme, then the host before the last ':'
    let rest = "self.substring(self.indexOf('://') + 3)";
    let host = format!("{rest}.substring(0, {rest}.lastIndexOf(':'))");
    let v6 = format!("{host}.substring(1, {host}.size() - 1)");
    let unicast = |h: &str| format!("(isIP({h}) && ip({h}).isGlobalUnicast())");
    Rule::new(format!(
        "!self.matches('{pattern}') || ({host}.startsWith('[') ? {v6ok} : ({host}.matches('(^|[.])[0-9][^.]*[.]?$') ? {v4ok} : !{host}.matches('(?i)^(localhost|metadata[.]google[.]internal|.*[.]localhost)[.]?$')))",
        pattern = proxy_url_pattern(),
        v6ok = unicast(&v6),
        v4ok = unicast(&host),
    ))
    .message("proxy host must be a DNS name or a unicast IP address a session pod can reach: not loopback (127.0.0.0/8, ::1, localhost), unspecified (0.0.0.0, ::), link-local or cloud metadata (169.254.0.0/16, fe80::/10), multicast, or a number Chromium would read as an address")
}
