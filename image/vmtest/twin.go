package vmtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/twinpbx/twinpbx/firmware/boxconfig"
	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/internal/testbed"
)

// The office network of a twin pair of VMs (TwinNet). It lives in its own
// network namespace, so fixed addresses collide with nothing.
var (
	TwinLAN     = netip.MustParsePrefix("10.77.0.0/24")
	TwinGateway = netip.MustParseAddr("10.77.0.1") // the namespace itself: answers ARP
	TwinVIP     = netip.MustParsePrefix("10.77.0.10/24")
	TwinPhones  = []netip.Addr{netip.MustParseAddr("10.77.0.101"), netip.MustParseAddr("10.77.0.102")}
	twinLANAddr = map[string]netip.Addr{"a": netip.MustParseAddr("10.77.0.11"), "b": netip.MustParseAddr("10.77.0.12")}
	twinXAddr   = map[string]netip.Addr{"a": netip.MustParseAddr("169.254.77.1"), "b": netip.MustParseAddr("169.254.77.2")}
)

// twinXPort is each box's end of the crossover cable: a UDP port on the
// namespace's loopback (QEMU's dgram netdev).
var twinXPort = map[string]int{"a": 47701, "b": 47702}

// TwinNodes are the node names of the pair.
var TwinNodes = []string{"a", "b"}

// TwinNet is the network of a twin pair of VMs: a network namespace with
// a bridge as the office switch, one tap per VM on it, and the gateway's
// and the phones' addresses on the bridge (so the namespace answers ARP
// for the gateway and runs the phones). The crossover cable between the
// VMs is a QEMU dgram link on the namespace's loopback.
type TwinNet struct {
	// NS is the namespace: "tp" and 6 random hex digits, then "-vm".
	NS string
}

// NewTwinNet builds the network. On error what was built is removed.
func NewTwinNet(ctx context.Context) (*TwinNet, error) {
	var r [3]byte
	if _, err := rand.Read(r[:]); err != nil {
		return nil, fmt.Errorf("naming the twin network: %w", err)
	}
	n := &TwinNet{NS: "tp" + hex.EncodeToString(r[:]) + "-vm"}
	if err := ip(ctx, "netns", "add", n.NS); err != nil {
		return nil, err
	}
	steps := [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", "br0", "type", "bridge"},
		{"addr", "add", netip.PrefixFrom(TwinGateway, TwinLAN.Bits()).String(), "dev", "br0"},
	}
	for _, p := range TwinPhones {
		steps = append(steps, []string{"addr", "add", netip.PrefixFrom(p, TwinLAN.Bits()).String(), "dev", "br0"})
	}
	steps = append(steps, []string{"link", "set", "br0", "up"})
	for _, node := range TwinNodes {
		tap := twinTap(node)
		steps = append(steps,
			[]string{"tuntap", "add", "dev", tap, "mode", "tap"},
			[]string{"link", "set", tap, "master", "br0"},
			[]string{"link", "set", tap, "up"})
	}
	for _, s := range steps {
		if err := ip(ctx, append([]string{"-n", n.NS}, s...)...); err != nil {
			return nil, errors.Join(err, n.Close())
		}
	}
	return n, nil
}

// Close removes the namespace and with it the bridge and the taps.
func (n *TwinNet) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return ip(ctx, "netns", "del", n.NS)
}

// Start starts a machine inside the namespace, where its tap is.
func (n *TwinNet) Start(c Config) (*Machine, error) {
	var m *Machine
	err := testbed.InNS(n.NS, func() error {
		var err error
		m, err = Start(c)
		return err
	})
	return m, err
}

// Command is cmd run inside the namespace (a phone).
func (n *TwinNet) Command(ctx context.Context, cmd ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.NS}, cmd...)...)
}

// Do runs fn on a thread inside the namespace: sockets it opens stay
// there.
func (n *TwinNet) Do(fn func() error) error { return testbed.InNS(n.NS, fn) }

func twinTap(node string) string { return "tap-" + node }

func ip(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// TwinBoxConfig is the box config of twin node ("a" or "b") on a
// TwinNet: SIP on the VIP, the heartbeats over the crossover (eth1) and
// the LAN (eth0), the namespace as gateway, and a dead time and lease of
// 1 s instead of 300 ms: two TCG machines on a shared, busy host stall
// for hundreds of milliseconds at a time, which the default would take
// for a dead twin. (The "slow" preset would do, but its 200 ms interval
// is refused against the fixed 100 ms VIP probe span.)
func TwinBoxConfig(node, pairingKey string, exts ...config.Extension) (*config.Config, error) {
	peer := ""
	for _, n := range TwinNodes {
		if n != node {
			peer = n
		}
	}
	if _, ok := twinLANAddr[node]; !ok {
		return nil, fmt.Errorf("twin node %q: want a or b", node)
	}
	return &config.Config{
		Node: config.Node{Name: node},
		SIP: config.SIP{
			Listen:    []string{"udp:" + netip.AddrPortFrom(TwinVIP.Addr(), 5060).String()},
			Advertise: TwinVIP.Addr().String(),
			RTPPorts:  "30000-30099",
		},
		Extensions: exts,
		Cluster: &config.Cluster{
			Peer:         peer,
			PairingKey:   pairingKey,
			Crossover:    config.Path{Local: twinXAddr[node].String(), Peer: twinXAddr[peer].String()},
			LAN:          config.Path{Local: twinLANAddr[node].String(), Peer: twinLANAddr[peer].String()},
			LANInterface: "eth0",
			VIP:          TwinVIP.String(),
			Gateway:      TwinGateway.String(),
			DeadTime:     config.Duration(time.Second),
			Lease:        config.Duration(time.Second),
		},
	}, nil
}

// DataDisk makes an ext4 file system image at path (sizeMB) holding files
// (name → contents) at its root: a box's data partition as init mounts
// it (twinpbx.data=/dev/vda). Without metadata checksums, as the image's
// kernel modules cannot check them.
func DataDisk(ctx context.Context, path string, sizeMB int, files map[string][]byte) error {
	root, err := os.MkdirTemp(filepath.Dir(path), ".data-*")
	if err != nil {
		return fmt.Errorf("making a data disk: %w", err)
	}
	defer os.RemoveAll(root)
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(root, name), text, 0o600); err != nil {
			return fmt.Errorf("making a data disk: %w", err)
		}
	}
	out, err := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-L", "twinpbx-data", "-O", "^metadata_csum",
		"-d", root, path, fmt.Sprintf("%dM", sizeMB)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("making a data disk (mkfs.ext4, scripts/install-deps.sh vm): %w: %s", err, out)
	}
	return nil
}

// TwinDisk makes node's data disk in dir with its box config, and
// returns its path.
func TwinDisk(ctx context.Context, dir string, cfg *config.Config) (string, error) {
	text, err := yaml.Marshal(cfg)
	if err != nil {
		return "", fmt.Errorf("encoding the box config of %s: %w", cfg.Node.Name, err)
	}
	path := filepath.Join(dir, cfg.Node.Name+"-data.img")
	if err := DataDisk(ctx, path, 64, map[string][]byte{boxconfig.FileName: text}); err != nil {
		return "", err
	}
	return path, nil
}

// TwinMachine is the machine of twin node on a TwinNet: its LAN NIC on
// its tap, its crossover NIC on the dgram cable to the other node, its
// data disk, and the addresses on the kernel command line.
func TwinMachine(img, initrd, node, disk string) Config {
	peer := "b"
	if node == "b" {
		peer = "a"
	}
	host := twinLANAddr[node].As4()[3]
	return Config{
		Image:     img,
		Initrd:    initrd,
		NoUserNet: true,
		Append: fmt.Sprintf(bootAppend+" twinpbx.ip=%s twinpbx.gw=%s twinpbx.xip=%s twinpbx.data=/dev/vda twinpbx.modules=virtio_blk,crc32c_generic,ext4",
			netip.PrefixFrom(twinLANAddr[node], TwinLAN.Bits()), TwinGateway, netip.PrefixFrom(twinXAddr[node], 30)),
		Extra: []string{
			"-netdev", fmt.Sprintf("tap,id=lan,ifname=%s,script=no,downscript=no", twinTap(node)),
			"-device", fmt.Sprintf("virtio-net-pci,netdev=lan,mac=52:54:00:77:00:%02x", host),
			"-netdev", fmt.Sprintf("dgram,id=xover,local.type=inet,local.host=127.0.0.1,local.port=%d,remote.type=inet,remote.host=127.0.0.1,remote.port=%d",
				twinXPort[node], twinXPort[peer]),
			"-device", fmt.Sprintf("virtio-net-pci,netdev=xover,mac=52:54:00:77:01:%02x", host),
			"-drive", "file=" + disk + ",if=virtio,format=raw",
		},
	}
}

// Pid is QEMU's process id.
func (m *Machine) Pid() int { return m.cmd.Process.Pid }
