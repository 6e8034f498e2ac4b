// XDP programs for the bench rig (benches/xdp/veth.sh), not for geodns:
// - reflect: the floor. Every UDP query over IPv4 to port 5399 goes back where it came from, with
//   the addresses and ports swapped and the QR bit set (no user space, no answer built);
// - pass: passes everything (a veth needs an XDP program to take frames sent to it by XDP);
// - wire (built with -DWIRE_TO=IFINDEX): sends every frame out of that interface, so that a
//   namespace between client and server forwards with XDP and the server's end receives XDP
//   frames, not socket buffers, as from a NIC's driver.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

SEC("xdp")
int reflect(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP)) return XDP_PASS;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > end || ip->ihl != 5 || ip->protocol != IPPROTO_UDP) return XDP_PASS;
    struct udphdr *udp = (void *)(ip + 1);
    if ((void *)(udp + 1) > end || udp->dest != bpf_htons(5399)) return XDP_PASS;
    unsigned char *dns = (void *)(udp + 1);
    if ((void *)(dns + 12) > end) return XDP_DROP;
    unsigned char mac[ETH_ALEN];
    __builtin_memcpy(mac, eth->h_source, ETH_ALEN);
    __builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
    __builtin_memcpy(eth->h_dest, mac, ETH_ALEN);
    __be32 a = ip->saddr; ip->saddr = ip->daddr; ip->daddr = a;
    __be16 p = udp->source; udp->source = udp->dest; udp->dest = p;
    udp->check = 0;
    dns[2] |= 0x80;
    return XDP_TX;
}

SEC("xdp")
int pass(struct xdp_md *ctx) { return XDP_PASS; }

#ifdef WIRE_TO
SEC("xdp")
int wire(struct xdp_md *ctx) { return bpf_redirect(WIRE_TO, 0); }
#endif

char LICENSE[] SEC("license") = "GPL";
