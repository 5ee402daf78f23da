// Package config is the schema of the one YAML file that configures a twinpbx
// box: what the wizard writes, what `twinpbx config import` takes and what the
// store keeps, versioned. It is a leaf package: it imports none of ours, so
// every other package may use its types.
package config

import "time"

// Config is the whole configuration of one box. Field names are the YAML keys
// documented in docs/CONFIG.md; keep both in step.
type Config struct {
	// Version increases with every change that is applied; the store keeps
	// every version. Zero in a file being imported means "next version".
	Version    uint64      `yaml:"version,omitempty"`
	Node       Node        `yaml:"node"`
	SIP        SIP         `yaml:"sip"`
	Extensions []Extension `yaml:"extensions"`
	// Cluster pairs this box with its twin. Absent: the box runs standalone.
	Cluster *Cluster `yaml:"cluster,omitempty"`
	Site    *Site    `yaml:"site,omitempty"` // a site cluster of three boxes or more (site.go)
	// Console holds the wizard's settings beyond the PBX (console.go).
	Console *Console `yaml:"console,omitempty"`
	// Dispatcher, when present, makes the box a load balancer in front of PBXs instead of a PBX (dispatch.go).
	Dispatcher *Dispatcher `yaml:"dispatcher,omitempty"`
	// Trunks and Routes connect the PBX to the telephone network (trunks.go).
	Trunks    []TrunkLine `yaml:"trunks,omitempty"`
	Routes    []Route     `yaml:"routes,omitempty"`
	PSTN      *PSTN       `yaml:"pstn,omitempty"`      // the twin pair's PSTN layer-1 monitor (pstn.go)
	Voicemail *Voicemail  `yaml:"voicemail,omitempty"` // mailboxes of the extensions (voicemail.go)

	// src remembers where each field came from when the config was parsed,
	// so that Validate can name file and line. Nil for configs built in code.
	src *source
}

// Node names this box.
type Node struct {
	Name string `yaml:"name"`
	// Network is the box's own LAN setting (console.go); absent: the OS's.
	Network *Network `yaml:"network,omitempty"`
}

// SIP holds the listeners and the registrar and call settings.
type SIP struct {
	// Listen lists "transport:host:port" entries; transport is udp, tcp or tls.
	Listen []string `yaml:"listen"`
	TLS    *SIPTLS  `yaml:"tls,omitempty"` // the certificate of the tls listeners (tls.go)
	// Advertise is the host put into Via, Contact, Record-Route and SDP when
	// a listener is bound to a wildcard address. Empty: the listen host.
	Advertise string `yaml:"advertise,omitempty"`
	// RTPPorts is the inclusive range "low-high" the media relay takes its
	// port pairs from (RTP on the even port, RTCP on the next odd one).
	RTPPorts string `yaml:"rtp_ports"`
	// Realm of digest authentication. Empty: the node name.
	Realm string `yaml:"realm,omitempty"`
	// MinExpires, MaxExpires and DefaultExpires bound registrations.
	MinExpires     Duration `yaml:"min_expires,omitempty"`
	MaxExpires     Duration `yaml:"max_expires,omitempty"`
	DefaultExpires Duration `yaml:"default_expires,omitempty"`
	// RingTimeout ends an unanswered call with 480 (no answer).
	RingTimeout Duration `yaml:"ring_timeout,omitempty"`
	// NonceLifetime is how long a digest nonce is accepted before the
	// client is re-challenged with stale=true.
	NonceLifetime Duration `yaml:"nonce_lifetime,omitempty"`
	// Codecs the relay offers and accepts, by RTP encoding name, in order
	// of preference. Empty: PCMU, PCMA, telephone-event, and any other codec
	// both ends share.
	Codecs []string `yaml:"codecs,omitempty"`
	// DigestAlgorithms are offered in challenges, one challenge each, in
	// this order: "MD5", "SHA-256" (RFC 8760). Empty: MD5 only, since many
	// phones (and sipp 3.6, baresip 1.0) fail once SHA-256 is offered.
	// Answers in either algorithm are always accepted.
	DigestAlgorithms []string `yaml:"digest_algorithms,omitempty"`
	// SyncRefreshes writes every registration refresh to disk before the
	// 200 OK. Default (false): a refresh that only moves a binding's
	// expiry is answered at once and written within a second, in one write
	// with the other refreshes of that second (new bindings, changed
	// ones and removals are always written before the answer).
	SyncRefreshes bool `yaml:"sync_refreshes,omitempty"`
}

// Extension is one phone number with its SIP account.
type Extension struct {
	Number string `yaml:"number"`
	Name   string `yaml:"name,omitempty"`
	// Secret is the SIP digest password.
	Secret string `yaml:"secret"`
	// MaxContacts bounds how many devices may register at once (0: 5).
	MaxContacts int `yaml:"max_contacts,omitempty"`
	// CallWaiting: a call to the extension while it is in a call rings its
	// phones too (they show it beside the call in progress); a third call
	// gets 486 Busy Here. Absent: on. Off: the second call gets 486.
	CallWaiting  *bool  `yaml:"call_waiting,omitempty"`
	Voicemail    *bool  `yaml:"voicemail,omitempty"`     // a mailbox (voicemail.go); absent: voicemail.all
	VoicemailPIN string `yaml:"voicemail_pin,omitempty"` // opens the mailbox from other phones (voicemail.go)
}

// Calls is how many calls the extension may be in at once: two with call
// waiting (one in progress, one waiting), else one.
func (e Extension) Calls() int {
	if e.CallWaiting == nil || *e.CallWaiting {
		return 2
	}
	return 1
}

// Duration is a time.Duration written in YAML as "90s", "10m" or "1h".
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Cluster pairs this box with its twin (see docs/CLUSTER.md).
type Cluster struct {
	// Peer is the twin's node name.
	Peer string `yaml:"peer"`
	// PairingKey is the secret both boxes share (at least 16 characters);
	// it keys the heartbeats and the replication link.
	PairingKey string `yaml:"pairing_key"`
	// Crossover and LAN are the two heartbeat paths: this box's address and
	// the twin's on each. Replication runs over the crossover, the LAN
	// being its fallback.
	Crossover Path `yaml:"crossover"`
	LAN       Path `yaml:"lan"`
	// LANInterface is the interface that carries the VIP (e.g. "eth0").
	LANInterface string `yaml:"lan_interface"`
	// VIP is the virtual address with its prefix, e.g. "192.168.1.10/24".
	VIP string `yaml:"vip"`
	// Gateway is the tie-breaker: an address on the LAN that answers ARP
	// (the office router).
	Gateway string `yaml:"gateway"`
	// Port is the UDP port of the heartbeats and the TCP port of the
	// replication link on both paths (default 7450).
	Port int `yaml:"port,omitempty"`
	// Preferred names the box that becomes active when both start at once
	// with the same data; with Failback it also takes service back once it
	// has been a healthy standby for FailbackDelay. Default: sticky.
	Preferred     string   `yaml:"preferred,omitempty"`
	Failback      bool     `yaml:"failback,omitempty"`
	FailbackDelay Duration `yaml:"failback_delay,omitempty"`
	// Timing is a preset ("fast", "default", "slow") for the values below;
	// values set explicitly override the preset.
	Timing   string   `yaml:"timing,omitempty"`
	Interval Duration `yaml:"interval,omitempty"`
	DeadTime Duration `yaml:"dead_time,omitempty"`
	Lease    Duration `yaml:"lease,omitempty"`
	BootWait Duration `yaml:"boot_wait,omitempty"`
	// GARPCount gratuitous ARPs are sent at takeover, then one every
	// GARPInterval for GARPRefresh.
	GARPCount    int      `yaml:"garp_count,omitempty"`
	GARPInterval Duration `yaml:"garp_interval,omitempty"`
	GARPRefresh  Duration `yaml:"garp_refresh,omitempty"`
	// MigrationThreshold failures of a resource within FailureTimeout are
	// restarted in place; one more moves service to the twin.
	MigrationThreshold int      `yaml:"migration_threshold,omitempty"`
	FailureTimeout     Duration `yaml:"failure_timeout,omitempty"`
	// WatchdogTimeout is the hardware watchdog's timeout (default: 5s on
	// the simulated board, 10s on real boards).
	WatchdogTimeout Duration `yaml:"watchdog_timeout,omitempty"`
}

// Path is one heartbeat path: this box's address and the twin's.
type Path struct {
	Local string `yaml:"local"`
	Peer  string `yaml:"peer"`
}
