//! SSRF protection for outbound requests.
//!
//! Deliveries may only reach public unicast addresses. Every address is classified against the
//! IANA IPv4 and IPv6 special-purpose registries ([`classify`]); a non-public one is refused
//! unless the [`Policy`] permits it: `security.allow_private_networks` permits every class but
//! cloud metadata services, and `security.allow_networks` permits the listed CIDRs (a metadata
//! address only when listed as a single address, since it hands out cloud credentials).
//!
//! The check runs on the address actually connected: the reqwest DNS resolver is wrapped
//! ([`GuardedResolver`]) so hyper only ever sees the allowed addresses of one lookup (no second
//! lookup, hence no DNS rebinding window), and IP-literal URLs, which never reach the resolver,
//! are checked with [`Policy::check`] before connecting.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use switchboard_core::config::SecurityConfig;

/// Why an address is not public: its special-purpose class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    /// `0.0.0.0`, `::`.
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16`.
    Private,
    /// `fc00::/7`.
    UniqueLocal,
    /// `100.64.0.0/10`, carrier-grade NAT.
    SharedAddressSpace,
    /// `169.254.0.0/16`, `fe80::/10`.
    LinkLocal,
    /// A cloud instance metadata / credentials endpoint (`169.254.169.254`, `fd00:ec2::254`…).
    CloudMetadata,
    /// `192.0.2.0/24`, `198.51.100.0/24`, `203.0.113.0/24`, `2001:db8::/32`, `3fff::/20`.
    Documentation,
    /// `198.18.0.0/15`.
    Benchmarking,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `192.0.0.0/24`, `2001::/23` (outside Teredo).
    ProtocolAssignment,
    /// `2001::/32`.
    Teredo,
    /// `64:ff9b:1::/48`.
    LocalNat64,
    /// `100::/64`.
    Discard,
    /// `fec0::/10` (deprecated).
    SiteLocal,
    /// `0.0.0.0/8`, `192.88.99.0/24`, `240.0.0.0/4`, `::/96` (IPv4-compatible) and IPv6 outside
    /// global unicast `2000::/3`.
    Reserved,
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unspecified => "unspecified address",
            Self::Loopback => "loopback",
            Self::Private => "private network",
            Self::UniqueLocal => "unique local address, private network",
            Self::SharedAddressSpace => "shared address space (CGNAT)",
            Self::LinkLocal => "link-local",
            Self::CloudMetadata => "cloud metadata service",
            Self::Documentation => "documentation range",
            Self::Benchmarking => "benchmarking range",
            Self::Multicast => "multicast",
            Self::Broadcast => "broadcast",
            Self::ProtocolAssignment => "IETF protocol assignment",
            Self::Teredo => "Teredo tunnel",
            Self::LocalNat64 => "local-use NAT64",
            Self::Discard => "discard-only range",
            Self::SiteLocal => "deprecated site-local",
            Self::Reserved => "reserved range",
        })
    }
}

/// Cloud metadata and credentials endpoints: AWS/GCP/Azure/OCI IMDS, AWS ECS task credentials,
/// EKS Pod Identity, Alibaba Cloud.
const CLOUD_METADATA_V4: [Ipv4Addr; 4] = [
    Ipv4Addr::new(169, 254, 169, 254),
    Ipv4Addr::new(169, 254, 170, 2),
    Ipv4Addr::new(169, 254, 170, 23),
    Ipv4Addr::new(100, 100, 100, 200),
];
/// AWS IMDS and EKS Pod Identity over IPv6.
const CLOUD_METADATA_V6: [Ipv6Addr; 2] = [
    Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254),
    Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x23),
];

/// IPv4 special-purpose ranges, most specific first.
const SPECIAL_V4: &[([u8; 4], u8, Category)] = &[
    ([0, 0, 0, 0], 32, Category::Unspecified),
    ([0, 0, 0, 0], 8, Category::Reserved),
    ([10, 0, 0, 0], 8, Category::Private),
    ([100, 64, 0, 0], 10, Category::SharedAddressSpace),
    ([127, 0, 0, 0], 8, Category::Loopback),
    ([169, 254, 0, 0], 16, Category::LinkLocal),
    ([172, 16, 0, 0], 12, Category::Private),
    ([192, 0, 0, 0], 24, Category::ProtocolAssignment),
    ([192, 0, 2, 0], 24, Category::Documentation),
    ([192, 88, 99, 0], 24, Category::Reserved),
    ([192, 168, 0, 0], 16, Category::Private),
    ([198, 18, 0, 0], 15, Category::Benchmarking),
    ([198, 51, 100, 0], 24, Category::Documentation),
    ([203, 0, 113, 0], 24, Category::Documentation),
    ([224, 0, 0, 0], 4, Category::Multicast),
    ([255, 255, 255, 255], 32, Category::Broadcast),
    ([240, 0, 0, 0], 4, Category::Reserved),
];

/// How an IPv6 range is classified.
enum V6Class {
    Is(Category),
    /// Classify the IPv4 address in the low 32 bits (IPv4-mapped, NAT64 well-known prefix).
    EmbeddedLow,
    /// Classify the IPv4 address in bits 16..48 (6to4).
    Embedded6to4,
}

/// IPv6 special-purpose ranges, most specific first; anything else outside `2000::/3` is
/// [`Category::Reserved`].
const SPECIAL_V6: &[(u128, u8, V6Class)] = &[
    (0, 128, V6Class::Is(Category::Unspecified)),
    (1, 128, V6Class::Is(Category::Loopback)),
    (0xffff_0000_0000, 96, V6Class::EmbeddedLow),
    (0, 96, V6Class::Is(Category::Reserved)), // IPv4-compatible, deprecated
    (0x0064_ff9b << 96, 96, V6Class::EmbeddedLow),
    (
        (0x0064_ff9b_0001 << 80),
        48,
        V6Class::Is(Category::LocalNat64),
    ),
    (0x0100 << 112, 64, V6Class::Is(Category::Discard)),
    (0x2001 << 112, 32, V6Class::Is(Category::Teredo)),
    (0x2001 << 112, 23, V6Class::Is(Category::ProtocolAssignment)),
    (0x2001_0db8 << 96, 32, V6Class::Is(Category::Documentation)),
    (0x2002 << 112, 16, V6Class::Embedded6to4),
    (0x3fff << 112, 20, V6Class::Is(Category::Documentation)),
    (0xfc00 << 112, 7, V6Class::Is(Category::UniqueLocal)),
    (0xfe80 << 112, 10, V6Class::Is(Category::LinkLocal)),
    (0xfec0 << 112, 10, V6Class::Is(Category::SiteLocal)),
    (0xff00 << 112, 8, V6Class::Is(Category::Multicast)),
];

/// The special-purpose class of `ip`, or `None` when it is a public unicast address.
/// IPv4-mapped, NAT64 (`64:ff9b::/96`) and 6to4 addresses are classified by their IPv4 address.
pub fn classify(ip: IpAddr) -> Option<Category> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// Whether `ip` is a public unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    classify(ip).is_none()
}

fn classify_v4(ip: Ipv4Addr) -> Option<Category> {
    if CLOUD_METADATA_V4.contains(&ip) {
        return Some(Category::CloudMetadata);
    }
    let bits = u32::from(ip);
    SPECIAL_V4
        .iter()
        .find(|(base, prefix, _)| prefix_eq32(bits, u32::from_be_bytes(*base), *prefix))
        .map(|(_, _, category)| *category)
}

fn classify_v6(ip: Ipv6Addr) -> Option<Category> {
    if CLOUD_METADATA_V6.contains(&ip) {
        return Some(Category::CloudMetadata);
    }
    let bits = u128::from(ip);
    match SPECIAL_V6
        .iter()
        .find(|(base, prefix, _)| prefix_eq128(bits, *base, *prefix))
    {
        Some((_, _, V6Class::Is(category))) => Some(*category),
        Some((_, _, V6Class::EmbeddedLow)) => classify_v4(Ipv4Addr::from(bits as u32)),
        Some((_, _, V6Class::Embedded6to4)) => classify_v4(Ipv4Addr::from((bits >> 80) as u32)),
        None if !prefix_eq128(bits, 0x2000 << 112, 3) => Some(Category::Reserved),
        None => None,
    }
}

fn prefix_eq32(a: u32, b: u32, prefix: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    a & mask == b & mask
}

fn prefix_eq128(a: u128, b: u128, prefix: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    a & mask == b & mask
}

/// An IP network in CIDR notation (`10.0.0.0/8`, `fd00::/8`), one `security.allow_networks`
/// entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether `ip` is inside this network (same address family only).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq32(u32::from(ip), u32::from(net), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq128(u128::from(ip), u128::from(net), self.prefix)
            }
            _ => false,
        }
    }

    /// Whether this network is exactly the single address `ip`.
    fn is_host(&self, ip: IpAddr) -> bool {
        self.addr == ip && self.prefix == if ip.is_ipv4() { 32 } else { 128 }
    }
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        SecurityConfig::parse_network(s).map(|(addr, prefix)| Self { addr, prefix })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Which non-public addresses deliveries may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Permit every non-public class except [`Category::CloudMetadata`]
    /// (`security.allow_private_networks`).
    pub allow_private: bool,
    /// Networks permitted even though not public (`security.allow_networks`). A cloud metadata
    /// address is permitted only by an entry that is exactly that address (`/32`, `/128`).
    pub allow: Vec<IpNet>,
}

impl Policy {
    /// The policy `[security]` describes; fails on an invalid `allow_networks` entry.
    pub fn from_config(security: &SecurityConfig) -> Result<Self, String> {
        Ok(Self {
            allow_private: security.allow_private_networks,
            allow: security
                .allow_networks
                .iter()
                .map(|n| n.parse())
                .collect::<Result<_, _>>()?,
        })
    }

    /// Whether deliveries may connect to `ip`, and why not.
    pub fn check(&self, ip: IpAddr) -> Result<(), BlockedAddress> {
        let Some(category) = classify(ip) else {
            return Ok(());
        };
        // An IPv4-mapped address is the same host as its IPv4 address.
        let v4 = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        let candidates = [Some(ip), v4];
        let mut candidates = candidates.iter().flatten();
        let allowed = if category == Category::CloudMetadata {
            candidates.any(|&ip| self.allow.iter().any(|net| net.is_host(ip)))
        } else {
            self.allow_private || candidates.any(|&ip| self.allow.iter().any(|n| n.contains(ip)))
        };
        if allowed {
            Ok(())
        } else {
            Err(BlockedAddress {
                ip,
                category,
                host: None,
            })
        }
    }
}

/// A refused connection: the address, its class and, when it came from DNS, the host name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockedAddress {
    /// The refused address.
    pub ip: IpAddr,
    /// Why it is not public.
    pub category: Category,
    /// The name that resolved to it, if any.
    pub host: Option<String>,
}

impl fmt::Display for BlockedAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ip = self.ip;
        let host_len = if ip.is_ipv4() { 32 } else { 128 };
        match &self.host {
            Some(host) => write!(f, "refused to connect to {host} at {ip}")?,
            None => write!(f, "refused to connect to {ip}")?,
        }
        write!(
            f,
            " ({}, not public): deliveries may only reach public addresses; allow it with \
             security.allow_networks = [\"{ip}/{host_len}\"]",
            self.category
        )?;
        if self.category == Category::CloudMetadata {
            f.write_str(
                " (cloud metadata services hand out credentials: security.allow_private_networks \
                 does not cover them, and they must be listed as single addresses)",
            )
        } else {
            f.write_str(" or security.allow_private_networks = true")
        }
    }
}

impl std::error::Error for BlockedAddress {}

/// A pending DNS answer.
pub type LookupFuture = Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send>>;

/// How host names become addresses; [`SystemLookup`] in production, a fixed table in tests.
pub trait Lookup: Send + Sync {
    /// All addresses of `host` (the port is ignored).
    fn lookup(&self, host: &str) -> LookupFuture;
}

/// The operating system's resolver (`getaddrinfo` through `tokio::net::lookup_host`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: &str) -> LookupFuture {
        let host = host.to_owned();
        Box::pin(async move { Ok(tokio::net::lookup_host((host.as_str(), 0)).await?.collect()) })
    }
}

/// A fixed name → addresses table; unknown names fail like NXDOMAIN.
#[derive(Debug, Clone, Default)]
pub struct StaticLookup(pub HashMap<String, Vec<IpAddr>>);

impl Lookup for StaticLookup {
    fn lookup(&self, host: &str) -> LookupFuture {
        let found = self.0.get(host).map(|ips| {
            ips.iter()
                .map(|&ip| SocketAddr::new(ip, 0))
                .collect::<Vec<_>>()
        });
        let host = host.to_owned();
        Box::pin(async move {
            found.ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("{host}: name not found"))
            })
        })
    }
}

/// A reqwest resolver that keeps the addresses the [`Policy`] allows and fails with the reason
/// when none remain. Its answer is exactly what the connector dials.
#[derive(Clone)]
pub struct GuardedResolver {
    policy: Arc<Policy>,
    lookup: Arc<dyn Lookup>,
}

impl fmt::Debug for GuardedResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedResolver")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl GuardedResolver {
    /// A resolver over the system lookup.
    pub fn new(policy: Arc<Policy>) -> Self {
        Self::with_lookup(policy, Arc::new(SystemLookup))
    }

    /// A resolver over `lookup`.
    pub fn with_lookup(policy: Arc<Policy>, lookup: Arc<dyn Lookup>) -> Self {
        Self { policy, lookup }
    }

    /// Resolves `host` once and keeps the allowed addresses, in order. Fails with the lookup
    /// error, with "did not resolve", or with the [`BlockedAddress`] of the first refused address
    /// when every address is refused.
    pub async fn resolve_host(
        &self,
        host: &str,
    ) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
        let resolved = self.lookup.lookup(host).await?;
        let mut refused = None;
        let mut allowed = Vec::with_capacity(resolved.len());
        for addr in resolved {
            match self.policy.check(addr.ip()) {
                Ok(()) => allowed.push(addr),
                Err(blocked) => {
                    refused.get_or_insert(blocked);
                }
            }
        }
        match (allowed.is_empty(), refused) {
            (false, _) => Ok(allowed),
            (true, Some(blocked)) => Err(Box::new(BlockedAddress {
                host: Some(host.to_owned()),
                ..blocked
            })),
            (true, None) => Err(format!("{host} did not resolve to any address").into()),
        }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let this = self.clone();
        Box::pin(async move {
            let allowed = this.resolve_host(name.as_str()).await?;
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Category::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|_| panic!("bad ip {s}"))
    }

    fn policy(allow_private: bool, allow: &[&str]) -> Policy {
        Policy::from_config(&SecurityConfig {
            allow_private_networks: allow_private,
            allow_networks: allow.iter().map(|s| (*s).to_owned()).collect(),
        })
        .expect("valid policy")
    }

    #[test]
    fn classifies_special_purpose_ranges_at_their_edges() {
        let table: &[(&str, Option<Category>)] = &[
            // Public examples.
            ("8.8.8.8", None),
            ("1.1.1.1", None),
            ("93.184.216.34", None),
            ("2606:4700:4700::1111", None),
            ("2001:4860:4860::8888", None),
            // 0.0.0.0/8
            ("0.0.0.0", Some(Unspecified)),
            ("0.0.0.1", Some(Reserved)),
            ("0.255.255.255", Some(Reserved)),
            ("1.0.0.0", None),
            // 10/8
            ("9.255.255.255", None),
            ("10.0.0.0", Some(Private)),
            ("10.255.255.255", Some(Private)),
            ("11.0.0.0", None),
            // 100.64/10
            ("100.63.255.255", None),
            ("100.64.0.0", Some(SharedAddressSpace)),
            ("100.127.255.255", Some(SharedAddressSpace)),
            ("100.128.0.0", None),
            ("100.100.100.200", Some(CloudMetadata)),
            // 127/8
            ("126.255.255.255", None),
            ("127.0.0.0", Some(Loopback)),
            ("127.0.0.1", Some(Loopback)),
            ("127.255.255.255", Some(Loopback)),
            ("128.0.0.0", None),
            // 169.254/16
            ("169.253.255.255", None),
            ("169.254.0.0", Some(LinkLocal)),
            ("169.254.169.253", Some(LinkLocal)),
            ("169.254.169.254", Some(CloudMetadata)),
            ("169.254.170.2", Some(CloudMetadata)),
            ("169.254.170.23", Some(CloudMetadata)),
            ("169.254.255.255", Some(LinkLocal)),
            ("169.255.0.0", None),
            // 172.16/12
            ("172.15.255.255", None),
            ("172.16.0.0", Some(Private)),
            ("172.31.255.255", Some(Private)),
            ("172.32.0.0", None),
            // 192.0.0/24, 192.0.2/24
            ("191.255.255.255", None),
            ("192.0.0.0", Some(ProtocolAssignment)),
            ("192.0.0.255", Some(ProtocolAssignment)),
            ("192.0.1.0", None),
            ("192.0.2.0", Some(Documentation)),
            ("192.0.2.255", Some(Documentation)),
            ("192.0.3.0", None),
            // 192.88.99/24
            ("192.88.98.255", None),
            ("192.88.99.0", Some(Reserved)),
            ("192.88.99.255", Some(Reserved)),
            ("192.88.100.0", None),
            // 192.168/16
            ("192.167.255.255", None),
            ("192.168.0.0", Some(Private)),
            ("192.168.255.255", Some(Private)),
            ("192.169.0.0", None),
            // 198.18/15
            ("198.17.255.255", None),
            ("198.18.0.0", Some(Benchmarking)),
            ("198.19.255.255", Some(Benchmarking)),
            ("198.20.0.0", None),
            // 198.51.100/24, 203.0.113/24
            ("198.51.99.255", None),
            ("198.51.100.0", Some(Documentation)),
            ("198.51.100.255", Some(Documentation)),
            ("198.51.101.0", None),
            ("203.0.112.255", None),
            ("203.0.113.0", Some(Documentation)),
            ("203.0.113.255", Some(Documentation)),
            ("203.0.114.0", None),
            // 224/4, 240/4, broadcast
            ("223.255.255.255", None),
            ("224.0.0.0", Some(Multicast)),
            ("239.255.255.255", Some(Multicast)),
            ("240.0.0.0", Some(Reserved)),
            ("255.255.255.254", Some(Reserved)),
            ("255.255.255.255", Some(Broadcast)),
            // IPv6 ::, ::1, ::/96 IPv4-compatible
            ("::", Some(Unspecified)),
            ("::1", Some(Loopback)),
            ("::2", Some(Reserved)),
            ("::808:808", Some(Reserved)),
            ("::ffff:ffff", Some(Reserved)),
            ("::1:0:0", Some(Reserved)),
            // ::ffff:0:0/96 mapped
            ("::ffff:0.0.0.0", Some(Unspecified)),
            ("::ffff:127.0.0.1", Some(Loopback)),
            ("::ffff:10.0.0.1", Some(Private)),
            ("::ffff:100.64.0.1", Some(SharedAddressSpace)),
            ("::ffff:169.254.169.254", Some(CloudMetadata)),
            ("::ffff:8.8.8.8", None),
            ("::ffff:255.255.255.255", Some(Broadcast)),
            ("::1:ffff:0:0", Some(Reserved)),
            // 64:ff9b::/96 NAT64, 64:ff9b:1::/48 local-use NAT64
            ("64:ff9b::", Some(Unspecified)),
            ("64:ff9b::10.0.0.1", Some(Private)),
            ("64:ff9b::127.0.0.1", Some(Loopback)),
            ("64:ff9b::169.254.169.254", Some(CloudMetadata)),
            ("64:ff9b::8.8.8.8", None),
            ("64:ff9b::255.255.255.255", Some(Broadcast)),
            ("64:ff9b::1:0:0", Some(Reserved)),
            ("64:ff9b:1::", Some(LocalNat64)),
            ("64:ff9b:1:ffff:ffff:ffff:ffff:ffff", Some(LocalNat64)),
            ("64:ff9b:2::", Some(Reserved)),
            // 100::/64 discard
            ("100::", Some(Discard)),
            ("100::ffff:ffff:ffff:ffff", Some(Discard)),
            ("100:0:0:1::", Some(Reserved)),
            // 2000::/3 starts
            ("1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some(Reserved)),
            ("2000::", None),
            // 2001::/23 IETF, Teredo 2001::/32
            ("2001::", Some(Teredo)),
            ("2001:0:ffff:ffff:ffff:ffff:ffff:ffff", Some(Teredo)),
            ("2001:1::", Some(ProtocolAssignment)),
            (
                "2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff",
                Some(ProtocolAssignment),
            ),
            ("2001:200::", None),
            // 2001:db8::/32 documentation
            ("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", None),
            ("2001:db8::", Some(Documentation)),
            (
                "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
                Some(Documentation),
            ),
            ("2001:db9::", None),
            // 2002::/16 6to4: the embedded IPv4 decides
            ("2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None),
            ("2002::", Some(Unspecified)),
            ("2002:a00:1::1", Some(Private)),
            ("2002:7f00:1::", Some(Loopback)),
            ("2002:a9fe:a9fe::", Some(CloudMetadata)),
            ("2002:808:808::1", None),
            ("2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some(Broadcast)),
            ("2003::", None),
            // 3fff::/20 documentation (RFC 9637)
            ("3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None),
            ("3fff::", Some(Documentation)),
            (
                "3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff",
                Some(Documentation),
            ),
            ("3fff:1000::", None),
            ("3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None),
            ("4000::", Some(Reserved)),
            // fc00::/7 ULA, AWS metadata
            ("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some(Reserved)),
            ("fc00::", Some(UniqueLocal)),
            ("fd00:ec2::254", Some(CloudMetadata)),
            ("fd00:ec2::23", Some(CloudMetadata)),
            ("fd00:ec2::253", Some(UniqueLocal)),
            ("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some(UniqueLocal)),
            ("fe00::", Some(Reserved)),
            ("fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some(Reserved)),
            // fe80::/10, fec0::/10, ff00::/8
            ("fe80::", Some(LinkLocal)),
            ("febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some(LinkLocal)),
            ("fec0::", Some(SiteLocal)),
            ("feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some(SiteLocal)),
            ("ff00::", Some(Multicast)),
            ("ff02::1", Some(Multicast)),
            ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some(Multicast)),
        ];
        let mut wrong = Vec::new();
        for &(addr, expected) in table {
            let got = classify(ip(addr));
            if got != expected {
                wrong.push(format!("{addr}: expected {expected:?}, got {got:?}"));
            }
            assert_eq!(is_public(ip(addr)), expected.is_none(), "{addr}");
        }
        assert!(wrong.is_empty(), "misclassified:\n{}", wrong.join("\n"));
    }

    #[test]
    fn policy_combinations() {
        // (allow_private, allow_networks, address, allowed)
        let table: &[(bool, &[&str], &str, bool)] = &[
            (false, &[], "8.8.8.8", true),
            (false, &[], "2606:4700:4700::1111", true),
            (false, &[], "10.0.0.1", false),
            (false, &[], "::1", false),
            (false, &[], "169.254.169.254", false),
            (true, &[], "8.8.8.8", true),
            (true, &[], "10.0.0.1", true),
            (true, &[], "127.0.0.1", true),
            (true, &[], "fe80::1", true),
            (true, &[], "169.254.1.1", true),
            (true, &[], "169.254.169.254", false),
            (true, &[], "::ffff:169.254.169.254", false),
            (true, &[], "fd00:ec2::254", false),
            (true, &[], "fd00::1", true),
            (false, &["10.0.0.0/8"], "10.1.2.3", true),
            (false, &["10.0.0.0/8"], "::ffff:10.1.2.3", true),
            (false, &["10.0.0.0/8"], "11.0.0.1", true),
            (false, &["10.0.0.0/8"], "172.16.0.1", false),
            (false, &["10.0.0.0/8"], "127.0.0.1", false),
            (false, &["10.0.0.0/8", "fd00::/8"], "fd12::1", true),
            (false, &["fd00::/8"], "fc00::1", false),
            (false, &["127.0.0.1"], "127.0.0.1", true),
            (false, &["127.0.0.1"], "127.0.0.2", false),
            // Metadata needs its own single-address entry, even under wider allowed networks.
            (false, &["169.254.0.0/16"], "169.254.169.254", false),
            (false, &["169.254.0.0/16"], "169.254.1.1", true),
            (false, &["fd00::/8"], "fd00:ec2::254", false),
            (true, &["0.0.0.0/0", "::/0"], "169.254.169.254", false),
            (false, &["169.254.169.254/32"], "169.254.169.254", true),
            (
                false,
                &["169.254.169.254/32"],
                "::ffff:169.254.169.254",
                true,
            ),
            (true, &["169.254.169.254/32"], "169.254.170.2", false),
            (false, &["fd00:ec2::254/128"], "fd00:ec2::254", true),
            (false, &["fd00:ec2::254"], "fd00:ec2::254", true),
        ];
        for &(allow_private, allow, addr, allowed) in table {
            let verdict = policy(allow_private, allow).check(ip(addr));
            assert_eq!(
                verdict.is_ok(),
                allowed,
                "allow_private={allow_private} allow={allow:?} {addr}: {verdict:?}"
            );
        }
    }

    #[test]
    fn errors_say_why_and_how_to_allow() {
        let metadata = Policy::default()
            .check(ip("169.254.169.254"))
            .expect_err("refused")
            .to_string();
        assert!(
            metadata.starts_with(
                "refused to connect to 169.254.169.254 (cloud metadata service, not public): \
                 deliveries may only reach public addresses; allow it with \
                 security.allow_networks = [\"169.254.169.254/32\"]"
            ),
            "{metadata}"
        );
        let private = Policy::default()
            .check(ip("10.0.0.1"))
            .expect_err("refused")
            .to_string();
        assert_eq!(
            private,
            "refused to connect to 10.0.0.1 (private network, not public): deliveries may only \
             reach public addresses; allow it with security.allow_networks = [\"10.0.0.1/32\"] \
             or security.allow_private_networks = true"
        );
        let ula = Policy::default().check(ip("fd00::1")).expect_err("refused");
        assert!(ula.to_string().contains("[\"fd00::1/128\"]"), "{ula}");
    }

    fn lookup() -> Arc<dyn Lookup> {
        let table: &[(&str, &[&str])] = &[
            ("public.test", &["93.184.216.34"]),
            ("public6.test", &["2606:4700:4700::1111"]),
            ("metadata.test", &["169.254.169.254"]),
            ("metadata6.test", &["fd00:ec2::254"]),
            ("mixed.test", &["10.0.0.1", "93.184.216.34"]),
            ("private.test", &["10.0.0.1"]),
            ("internal.test", &["10.1.2.3"]),
            ("localhost.test", &["127.0.0.1", "::1"]),
            ("cgnat.test", &["100.64.0.1"]),
            ("linklocal.test", &["169.254.1.1"]),
            ("linklocal6.test", &["fe80::1"]),
            ("ula.test", &["fd12::1"]),
            ("mapped.test", &["::ffff:127.0.0.1"]),
            ("nat64.test", &["64:ff9b::a00:1"]),
            ("nat64-public.test", &["64:ff9b::808:808"]),
            ("sixtofour.test", &["2002:808:808::1"]),
            ("doc.test", &["192.0.2.1", "2001:db8::1"]),
            ("multicast.test", &["224.0.0.1"]),
            ("unspecified.test", &["0.0.0.0"]),
            ("empty.test", &[]),
        ];
        Arc::new(StaticLookup(
            table
                .iter()
                .map(|(host, ips)| ((*host).to_owned(), ips.iter().map(|s| ip(s)).collect()))
                .collect(),
        ))
    }

    /// What resolving a host should give.
    #[derive(Debug)]
    enum Expect {
        Addrs(&'static [&'static str]),
        Refused(Category, &'static str),
        Fails,
    }

    #[tokio::test]
    async fn hostnames_resolving_to_each_class() {
        use Expect::*;
        let none: &[&str] = &[];
        // (allow_private, allow_networks, host, expected)
        let table: &[(bool, &[&str], &str, Expect)] = &[
            (false, none, "public.test", Addrs(&["93.184.216.34"])),
            (
                false,
                none,
                "public6.test",
                Addrs(&["2606:4700:4700::1111"]),
            ),
            (false, none, "mixed.test", Addrs(&["93.184.216.34"])),
            (false, none, "sixtofour.test", Addrs(&["2002:808:808::1"])),
            (
                false,
                none,
                "nat64-public.test",
                Addrs(&["64:ff9b::808:808"]),
            ),
            (
                false,
                none,
                "metadata.test",
                Refused(CloudMetadata, "169.254.169.254"),
            ),
            (
                false,
                none,
                "metadata6.test",
                Refused(CloudMetadata, "fd00:ec2::254"),
            ),
            (false, none, "private.test", Refused(Private, "10.0.0.1")),
            (false, none, "internal.test", Refused(Private, "10.1.2.3")),
            (
                false,
                none,
                "localhost.test",
                Refused(Loopback, "127.0.0.1"),
            ),
            (
                false,
                none,
                "cgnat.test",
                Refused(SharedAddressSpace, "100.64.0.1"),
            ),
            (
                false,
                none,
                "linklocal.test",
                Refused(LinkLocal, "169.254.1.1"),
            ),
            (
                false,
                none,
                "linklocal6.test",
                Refused(LinkLocal, "fe80::1"),
            ),
            (false, none, "ula.test", Refused(UniqueLocal, "fd12::1")),
            (
                false,
                none,
                "mapped.test",
                Refused(Loopback, "::ffff:127.0.0.1"),
            ),
            (
                false,
                none,
                "nat64.test",
                Refused(Private, "64:ff9b::a00:1"),
            ),
            (false, none, "doc.test", Refused(Documentation, "192.0.2.1")),
            (
                false,
                none,
                "multicast.test",
                Refused(Multicast, "224.0.0.1"),
            ),
            (
                false,
                none,
                "unspecified.test",
                Refused(Unspecified, "0.0.0.0"),
            ),
            (false, none, "empty.test", Fails),
            (false, none, "nxdomain.test", Fails),
            // Allow-list.
            (
                false,
                &["10.0.0.0/8"],
                "internal.test",
                Addrs(&["10.1.2.3"]),
            ),
            (
                false,
                &["10.0.0.0/8"],
                "mixed.test",
                Addrs(&["10.0.0.1", "93.184.216.34"]),
            ),
            (
                false,
                &["10.0.0.0/8"],
                "cgnat.test",
                Refused(SharedAddressSpace, "100.64.0.1"),
            ),
            (
                false,
                &["10.0.0.0/8"],
                "nat64.test",
                Refused(Private, "64:ff9b::a00:1"),
            ),
            (false, &["::1/128"], "localhost.test", Addrs(&["::1"])),
            (
                false,
                &["169.254.0.0/16"],
                "metadata.test",
                Refused(CloudMetadata, "169.254.169.254"),
            ),
            (
                false,
                &["169.254.169.254/32"],
                "metadata.test",
                Addrs(&["169.254.169.254"]),
            ),
            // allow_private_networks.
            (true, none, "private.test", Addrs(&["10.0.0.1"])),
            (true, none, "localhost.test", Addrs(&["127.0.0.1", "::1"])),
            (true, none, "ula.test", Addrs(&["fd12::1"])),
            (
                true,
                none,
                "metadata.test",
                Refused(CloudMetadata, "169.254.169.254"),
            ),
            (
                true,
                none,
                "metadata6.test",
                Refused(CloudMetadata, "fd00:ec2::254"),
            ),
            (
                true,
                &["fd00:ec2::254/128"],
                "metadata6.test",
                Addrs(&["fd00:ec2::254"]),
            ),
        ];
        let lookup = lookup();
        for (allow_private, allow, host, expected) in table {
            let policy = Arc::new(policy(*allow_private, allow));
            let resolver = GuardedResolver::with_lookup(policy, lookup.clone());
            let got = resolver.resolve_host(host).await;
            let context = format!("allow_private={allow_private} allow={allow:?} {host}");
            match (expected, got) {
                (Addrs(want), Ok(addrs)) => {
                    let want: Vec<SocketAddr> =
                        want.iter().map(|s| SocketAddr::new(ip(s), 0)).collect();
                    assert_eq!(addrs, want, "{context}");
                }
                (Refused(category, addr), Err(error)) => {
                    let blocked = error
                        .downcast_ref::<BlockedAddress>()
                        .unwrap_or_else(|| panic!("{context}: not a refusal: {error}"));
                    assert_eq!(blocked.category, *category, "{context}");
                    assert_eq!(blocked.ip, ip(addr), "{context}");
                    assert_eq!(blocked.host.as_deref(), Some(*host), "{context}");
                    let message = error.to_string();
                    assert!(
                        message.starts_with(&format!("refused to connect to {host} at {addr} (")),
                        "{context}: {message}"
                    );
                }
                (Fails, Err(error)) => {
                    assert!(
                        error.downcast_ref::<BlockedAddress>().is_none(),
                        "{context}"
                    );
                }
                (expected, got) => panic!("{context}: expected {expected:?}, got {got:?}"),
            }
        }
    }

    #[tokio::test]
    async fn reqwest_resolver_returns_only_allowed_addresses() {
        let resolver = GuardedResolver::with_lookup(Arc::new(Policy::default()), lookup());
        let name: Name = "mixed.test".parse().expect("name");
        let addrs: Vec<SocketAddr> = resolver.resolve(name).await.expect("resolves").collect();
        assert_eq!(addrs, vec![SocketAddr::new(ip("93.184.216.34"), 0)]);
        let name: Name = "metadata.test".parse().expect("name");
        let error = resolver.resolve(name).await.err().expect("refused");
        assert!(
            error
                .to_string()
                .contains("(cloud metadata service, not public)"),
            "{error}"
        );
    }

    #[test]
    fn allow_networks_are_validated() {
        for valid in [
            "10.0.0.0/8",
            "fd00::/8",
            "0.0.0.0/0",
            "::/0",
            "169.254.169.254/32",
            "fd00:ec2::254/128",
            "192.168.1.1",
            "::1",
        ] {
            assert!(valid.parse::<IpNet>().is_ok(), "{valid}");
        }
        for (invalid, why) in [
            ("10.0.0.1/8", "did you mean `10.0.0.0/8`?"),
            ("fd00::1/8", "did you mean `fd00::/8`?"),
            ("10.0.0.0/33", "prefix length must be 0 to 32"),
            ("fd00::/129", "prefix length must be 0 to 128"),
            ("10.0.0.0/", "prefix length"),
            ("10.0.0.0/+8", "prefix length"),
            ("10.0.0.0/8/8", "prefix length"),
            ("10.0.0/8", "is not an IP address"),
            ("localhost", "is not an IP address"),
            ("", "is not an IP address"),
            (" 10.0.0.0/8", "is not an IP address"),
        ] {
            let error = invalid.parse::<IpNet>().expect_err(invalid);
            assert!(
                error.starts_with(&format!(
                    "security.allow_networks: `{invalid}` is not a valid CIDR network"
                )) && error.contains(why),
                "{invalid}: {error}"
            );
        }
        let config = SecurityConfig {
            allow_private_networks: false,
            allow_networks: vec!["10.0.0.0/8".into(), "10.0.0.1/8".into()],
        };
        assert!(config.validate().is_err());
        assert!(Policy::from_config(&config).is_err());
        assert!(SecurityConfig::default().validate().is_ok());
        assert!(SecurityConfig::default().allow_networks.is_empty());
    }

    #[test]
    fn allow_networks_deserialize() {
        let config: SecurityConfig = serde_json::from_str(
            r#"{"allow_private_networks": false, "allow_networks": ["10.0.0.0/8", "fd00::/8"]}"#,
        )
        .expect("parses");
        assert_eq!(config.allow_networks, ["10.0.0.0/8", "fd00::/8"]);
        let policy = Policy::from_config(&config).expect("valid");
        assert!(policy.check(ip("10.9.9.9")).is_ok());
        assert!(policy.check(ip("fd99::1")).is_ok());
        let empty: SecurityConfig = serde_json::from_str("{}").expect("defaults");
        assert_eq!(empty, SecurityConfig::default());
    }
}
