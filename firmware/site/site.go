// Package site makes three boxes or more one site cluster (docs/SITE.md):
// the boxes find each other and notice each other's failure by gossip
// (hashicorp/memberlist, joined through a static list of seeds), and
// share their registrations in a table replicated by consensus
// (hashicorp/raft with its bolt store), so a call reaching any box finds a
// phone registered on any other.
//
// Each box keeps serving its own registrations from its own store as a
// standalone box does; the site table is a second copy, written behind.
// Writes go through the raft leader: a box computes what of its own
// registrations the table lacks (or still has after they ended) and sends
// that difference to the leader, which appends it to the log; a box that
// is not the leader forwards it over memberlist's encrypted reliable
// messages. The difference is computed again every tick until the table
// shows it, so a lost message or a leader change costs only a delay.
// Reads are local: every box looks callees up in its own copy of the
// table. A box that loses quorum keeps registering and serving its own
// phones, raises an alarm, and catches the table up once a leader is back.
//
// The leader keeps raft's voters in step with the members gossip sees: a
// new box is added at once, a box gone for RemoveAfter is removed, so a
// flapping box is not removed and added back each time. The first leader
// of a new site is the box with the lowest name once Expect boxes have
// met; it starts the log alone and adds the others.
package site

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/pbx/location"
)

// Options configure a Site.
type Options struct {
	// Config is the box's site section with defaults applied
	// (config.Site.Effective).
	Config config.Site
	// Dir holds the raft log, its stable store and snapshots.
	Dir    string
	Logger *slog.Logger
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// Tick is how often a box compares its registrations with the table
	// and the leader its voters with the members (default 500 ms).
	Tick time.Duration
	// ExpireEvery is how often the leader drops ended registrations from
	// the table (default 30 s). Lookups skip them before that.
	ExpireEvery time.Duration
	// SIP is where the other boxes send the calls they forward to this
	// box, "transport:ip:port" (SIPAddress); empty: this box takes no
	// forwarded calls and the others ring its phones directly.
	SIP string
}

// Site is this box's part in the site cluster. Create it with Start.
type Site struct {
	o     Options
	cfg   config.Site
	log   *slog.Logger
	name  string
	table *Table
	trust *trust

	ml     *memberlist.Memberlist
	raft   *raft.Raft
	trans  *raft.NetworkTransport
	stores *raftboltdb.BoltStore

	nudge   chan struct{}
	applyCh chan []byte
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu sync.Mutex
	// mine are this box's live registrations, as its store holds them.
	mine map[Key]location.Binding
	// pending counts changes of mine that the table did not show at the
	// last comparison.
	pending int
	// inflight are the changes sent to the leader and not yet seen in
	// the table, so that a burst is sent once, in parts, not again with
	// every pass.
	inflight map[Key]sent
	// hasState: this box is part of a raft configuration (bootstrapped,
	// added by a leader, or restarted with a log).
	hasState bool
	// leaderless is since when no leader was known (zero: one is).
	leaderless time.Time
	// gone is since when each voter has not been alive in gossip.
	gone map[raft.ServerID]time.Time
	// lastExpire is when this box, as leader, last expired bindings.
	lastExpire time.Time

	// viewMu guards view: the boxes gossip has shown, by name, copied in
	// memberlist's event callbacks (the nodes memberlist hands out change
	// under its own lock afterwards). A box that died or left stays, not
	// alive, so the status still lists it. Never held while calling
	// memberlist.
	viewMu sync.Mutex
	view   map[string]member
}

// meta is what each box tells the others through gossip.
type meta struct {
	// Raft is the box's raft address.
	Raft string `json:"raft"`
	// State: the box is part of a raft configuration.
	State bool `json:"state,omitempty"`
	// SIP is where the box takes forwarded calls (Options.SIP).
	SIP string `json:"sip,omitempty"`
}

// Message kinds on memberlist's reliable channel.
const msgCommand = 'c'

// Start joins the site: it opens the raft log in o.Dir, starts gossip on
// the bind address and joins through the seeds (retrying in the
// background while they do not answer). It never waits for the other
// boxes: REGISTER and calls must not wait for the site.
func Start(ctx context.Context, o Options) (*Site, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Tick <= 0 {
		o.Tick = 500 * time.Millisecond
	}
	if o.ExpireEvery <= 0 {
		o.ExpireEvery = 30 * time.Second
	}
	cfg := o.Config
	if cfg.Name == "" || cfg.Bind == "" || cfg.GossipPort == 0 || cfg.RaftPort == 0 || cfg.Expect == 0 {
		return nil, errors.New("starting the site: the config needs a name, a bind address, ports and expect (apply Effective)")
	}
	keys, err := deriveKeys(cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("starting the site: %w", err)
	}
	s := &Site{
		o: o, cfg: cfg, log: o.Logger, name: cfg.Name, table: NewTable(),
		nudge: make(chan struct{}, 1), applyCh: make(chan []byte, 64),
		mine: map[Key]location.Binding{}, inflight: map[Key]sent{}, gone: map[raft.ServerID]time.Time{}, view: map[string]member{},
	}
	s.trust = newTrust(keys.trust, o.Now, s.memberIPs)
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the site folder %s: %w", o.Dir, err)
	}
	if err := s.startRaft(keys); err != nil {
		s.closeRaft()
		return nil, err
	}
	if err := s.startGossip(keys.gossip); err != nil {
		s.closeRaft()
		return nil, err
	}
	ctx, s.cancel = context.WithCancel(ctx)
	s.wg.Add(3)
	go s.loop(ctx)
	go s.applier(ctx)
	go s.joiner(ctx)
	return s, nil
}

func (s *Site) startRaft(keys siteKeys) error {
	hl := hclog.New(&hclog.LoggerOptions{
		Name: "raft", Level: hclog.Info, DisableTime: true,
		Output: &logWriter{log: s.log.With("component", "raft")},
	})
	var err error
	s.stores, err = raftboltdb.New(raftboltdb.Options{Path: filepath.Join(s.o.Dir, "raft.db")})
	if err != nil {
		return fmt.Errorf("opening the site's raft log: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(s.o.Dir, 2, hl)
	if err != nil {
		return fmt.Errorf("opening the site's snapshots: %w", err)
	}
	addr := net.JoinHostPort(s.cfg.Bind, strconv.Itoa(s.cfg.RaftPort))
	stream, err := newTLSStream(addr, keys.raft)
	if err != nil {
		return err
	}
	s.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: stream, MaxPool: 3, Timeout: 5 * time.Second, Logger: hl,
	})
	has, err := raft.HasExistingState(s.stores, s.stores, snaps)
	if err != nil {
		return fmt.Errorf("reading the site's raft log: %w", err)
	}
	s.hasState = has
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(s.name)
	rc.Logger = hl
	rc.SnapshotThreshold = 4096
	s.raft, err = raft.NewRaft(rc, s.table, s.stores, s.stores, snaps, s.trans)
	if err != nil {
		return fmt.Errorf("starting the site's raft: %w", err)
	}
	return nil
}

func (s *Site) closeRaft() {
	if s.raft != nil {
		if err := s.raft.Shutdown().Error(); err != nil {
			s.log.Warn("stopping the site's raft", "err", err)
		}
	}
	if s.trans != nil {
		_ = s.trans.Close()
	}
	if s.stores != nil {
		_ = s.stores.Close()
	}
}

func (s *Site) startGossip(key []byte) error {
	mc := memberlist.DefaultLANConfig()
	tuneGossip(mc, s.cfg.Timing)
	mc.Name = s.name
	mc.BindAddr = s.cfg.Bind
	mc.BindPort = s.cfg.GossipPort
	mc.AdvertiseAddr = s.cfg.Bind
	mc.AdvertisePort = s.cfg.GossipPort
	mc.SecretKey = key
	mc.Delegate = delegate{s}
	mc.Events = events{s}
	mc.Logger = log.New(&logWriter{log: s.log.With("component", "gossip")}, "", 0)
	ml, err := memberlist.Create(mc)
	if err != nil {
		return fmt.Errorf("starting the site's gossip on %s:%d: %w", s.cfg.Bind, s.cfg.GossipPort, err)
	}
	s.ml = ml
	return nil
}

// Close leaves the site (the others see this box go at once) and stops.
// A leader hands its leadership to another voter first, so the site does
// not wait for an election.
func (s *Site) Close() error {
	s.cancel()
	s.wg.Wait()
	if s.raft.State() == raft.Leader {
		if err := s.raft.LeadershipTransfer().Error(); err != nil {
			s.log.Debug("handing the site's leadership over", "err", err)
		}
	}
	if err := s.ml.Leave(time.Second); err != nil {
		s.log.Warn("leaving the site", "err", err)
	}
	err := s.ml.Shutdown()
	s.closeRaft()
	if err != nil {
		return fmt.Errorf("stopping the site's gossip: %w", err)
	}
	return nil
}

// Published tells the site of a registration this box stored (made or
// refreshed). It never blocks on the network.
func (s *Site) Published(b location.Binding) {
	if !b.Expires.After(s.o.Now()) {
		s.Withdrawn(b.AOR, b.Contact)
		return
	}
	s.mu.Lock()
	s.mine[Key{b.AOR, b.Contact}] = b
	s.mu.Unlock()
	s.poke()
}

// Withdrawn tells the site that this box removed a registration.
func (s *Site) Withdrawn(aor, contact string) {
	s.mu.Lock()
	delete(s.mine, Key{aor, contact})
	s.mu.Unlock()
	s.poke()
}

func (s *Site) poke() {
	select {
	case s.nudge <- struct{}{}:
	default:
	}
}

// SharedLookup returns the live registrations of aor held by the other
// boxes, from this box's copy of the table (location.Shared).
func (s *Site) SharedLookup(aor string) []location.Binding {
	return s.table.Lookup(aor, s.name, s.o.Now())
}

// Table is this box's copy of the site table.
func (s *Site) Table() *Table { return s.table }

// loop compares this box's registrations with the table, and as leader
// keeps the voters and expiry, every tick or when a registration changed.
func (s *Site) loop(ctx context.Context) {
	defer s.wg.Done()
	t := time.NewTicker(s.o.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.nudge:
		}
		if s.step() {
			s.poke()
		}
		// Let a burst of registrations share one command.
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.o.Tick / 10):
		}
	}
}

// step is one pass of loop; it says whether changes are left to send
// at once.
func (s *Site) step() bool {
	s.bootstrap()
	leader, _ := s.raft.LeaderWithID()
	now := s.o.Now()
	s.mu.Lock()
	switch {
	case leader != "":
		s.leaderless = time.Time{}
	case s.leaderless.IsZero():
		s.leaderless = now
	}
	s.mu.Unlock()
	if s.raft.State() == raft.Leader {
		s.keepVoters(now)
		s.expire(now)
	} else if s.inConfiguration() {
		s.markState()
	}
	return s.sync()
}

// bootstrap starts the site's log on a new site: on the box with the
// lowest name, once Expect boxes have met and none of them has a log.
func (s *Site) bootstrap() {
	s.mu.Lock()
	has := s.hasState
	s.mu.Unlock()
	if has {
		return
	}
	alive := s.aliveMembers()
	if len(alive) < s.cfg.Expect {
		return
	}
	for _, m := range alive {
		if m.meta.State || m.name < s.name {
			return
		}
	}
	addr := raft.ServerAddress(net.JoinHostPort(s.cfg.Bind, strconv.Itoa(s.cfg.RaftPort)))
	err := s.raft.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{
		Suffrage: raft.Voter, ID: raft.ServerID(s.name), Address: addr,
	}}}).Error()
	if err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		s.log.Error("starting the site's log", "err", err)
		return
	}
	s.log.Info("started the site's log as its first member", "members", len(alive))
	s.markState()
}

// markState records that this box has a log and tells the others.
func (s *Site) markState() {
	s.mu.Lock()
	was := s.hasState
	s.hasState = true
	s.mu.Unlock()
	if !was {
		if err := s.ml.UpdateNode(time.Second); err != nil {
			s.log.Debug("telling the site this box has a log", "err", err)
		}
	}
}

func (s *Site) inConfiguration() bool {
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	return slices.ContainsFunc(f.Configuration().Servers, func(v raft.Server) bool { return v.ID == raft.ServerID(s.name) })
}

// member is one box as gossip last showed it.
type member struct {
	name  string
	addr  string // gossip address, host:port
	node  memberlist.Node
	alive bool
	meta  meta
}

// members returns the boxes gossip has shown, alive or not.
func (s *Site) members() []member {
	s.viewMu.Lock()
	defer s.viewMu.Unlock()
	out := make([]member, 0, len(s.view))
	for _, m := range s.view {
		out = append(out, m)
	}
	return out
}

func (s *Site) aliveMembers() []member {
	return slices.DeleteFunc(s.members(), func(m member) bool { return !m.alive })
}

// see records what gossip tells of a box; memberlist calls it with its
// node lock held, so n's fields are stable here.
func (s *Site) see(n *memberlist.Node, alive bool) {
	m := member{name: n.Name, addr: n.Address(), alive: alive,
		node: memberlist.Node{Name: n.Name, Addr: slices.Clone(n.Addr), Port: n.Port}}
	_ = json.Unmarshal(n.Meta, &m.meta)
	s.viewMu.Lock()
	s.view[n.Name] = m
	s.viewMu.Unlock()
}

// keepVoters adds alive boxes to raft's voters and removes boxes gone for
// RemoveAfter.
func (s *Site) keepVoters(now time.Time) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		s.log.Warn("reading the site's voters", "err", err)
		return
	}
	servers := f.Configuration().Servers
	alive := map[raft.ServerID]bool{}
	for _, m := range s.aliveMembers() {
		id := raft.ServerID(m.name)
		alive[id] = true
		if m.meta.Raft == "" {
			continue
		}
		addr := raft.ServerAddress(m.meta.Raft)
		if slices.ContainsFunc(servers, func(v raft.Server) bool { return v.ID == id && v.Address == addr }) {
			continue
		}
		if err := s.raft.AddVoter(id, addr, 0, 5*time.Second).Error(); err != nil {
			s.log.Warn("adding a box to the site's voters", "box", m.name, "err", err)
			continue
		}
		s.log.Info("box added to the site's voters", "box", m.name, "raft", addr)
	}
	var remove []raft.ServerID
	s.mu.Lock()
	for _, v := range servers {
		if v.ID == raft.ServerID(s.name) || alive[v.ID] {
			delete(s.gone, v.ID)
			continue
		}
		since, ok := s.gone[v.ID]
		if !ok {
			s.gone[v.ID] = now
			continue
		}
		if now.Sub(since) >= s.cfg.RemoveAfter.D() {
			remove = append(remove, v.ID)
		}
	}
	s.mu.Unlock()
	for _, id := range remove {
		if err := s.raft.RemoveServer(id, 0, 5*time.Second).Error(); err != nil {
			s.log.Warn("removing a gone box from the site's voters", "box", id, "err", err)
			continue
		}
		s.mu.Lock()
		delete(s.gone, id)
		s.mu.Unlock()
		s.log.Info("box removed from the site's voters", "box", id, "after", s.cfg.RemoveAfter.D())
	}
}

// expire drops ended registrations from the table, as leader.
func (s *Site) expire(now time.Time) {
	s.mu.Lock()
	due := now.Sub(s.lastExpire) >= s.o.ExpireEvery
	if due {
		s.lastExpire = now
	}
	s.mu.Unlock()
	if !due {
		return
	}
	data, err := json.Marshal(command{Op: opExpire, Before: now})
	if err != nil {
		return
	}
	if err := s.raft.Apply(data, 5*time.Second).Error(); err != nil {
		s.log.Debug("expiring the site table", "err", err)
	}
}

// resendAfter is how long a change sent to the leader is given to show
// in the table before it is sent again.
const resendAfter = 2 * time.Second

// sent is a change sent to the leader: the binding put (zero for a
// delete) and when.
type sent struct {
	b  location.Binding
	at time.Time
}

// diff is what the table must learn of this box's registrations, in at
// most maxPerCommand changes of each kind, leaving out changes sent less
// than resendAfter ago; n counts every change the table does not show,
// more whether changes are left for another command at once.
func (s *Site) diff(now time.Time) (c command, n int, more bool) {
	have := s.table.Owned(s.name)
	c = command{Op: opSync, Owner: s.name}
	s.mu.Lock()
	defer s.mu.Unlock()
	recent := func(k Key, b location.Binding) bool {
		f, ok := s.inflight[k]
		return ok && now.Sub(f.at) < resendAfter && sameBinding(f.b, b)
	}
	for k, b := range s.mine {
		if o, ok := have[k]; ok && sameBinding(o, b) {
			delete(s.inflight, k)
			continue
		}
		n++
		if recent(k, b) {
			continue
		}
		if len(c.Put) == maxPerCommand {
			more = true
			continue
		}
		c.Put = append(c.Put, b)
		s.inflight[k] = sent{b, now}
	}
	for k := range have {
		if _, ok := s.mine[k]; ok {
			continue
		}
		n++
		if recent(k, location.Binding{}) {
			continue
		}
		if len(c.Delete) == maxPerCommand {
			more = true
			continue
		}
		c.Delete = append(c.Delete, k)
		s.inflight[k] = sent{at: now}
	}
	for k := range s.inflight {
		_, mine := s.mine[k]
		_, had := have[k]
		if !mine && !had {
			delete(s.inflight, k)
		}
	}
	s.pending = n
	return c, n, more
}

func sameBinding(a, b location.Binding) bool {
	return a.Source == b.Source && a.CallID == b.CallID && a.CSeq == b.CSeq && a.Q == b.Q &&
		a.UserAgent == b.UserAgent && a.Expires.Equal(b.Expires) && a.Updated.Equal(b.Updated)
}

// sync sends this box's changes to the leader; more says that changes
// are left for another command at once.
func (s *Site) sync() (more bool) {
	c, n, more := s.diff(s.o.Now())
	if n == 0 || len(c.Put)+len(c.Delete) == 0 {
		return more
	}
	if err := s.send(c); err != nil {
		s.log.Debug("sending this box's registrations to the site table", "err", err)
		s.unsent(c) // the next tick tries again
		return false
	}
	return more
}

// send writes c through the leader: itself, or the leader over gossip.
func (s *Site) send(c command) error {
	data, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encoding the site's changes: %w", err)
	}
	if s.raft.State() == raft.Leader {
		return s.raft.Apply(data, 5*time.Second).Error()
	}
	_, id := s.raft.LeaderWithID()
	if id == "" {
		return errors.New("no leader") // the alarm says so
	}
	for _, m := range s.aliveMembers() {
		if m.name == string(id) {
			if err := s.ml.SendReliable(&m.node, append([]byte{msgCommand}, data...)); err != nil {
				return fmt.Errorf("sending to the leader %s: %w", id, err)
			}
			return nil
		}
	}
	return fmt.Errorf("the leader %s is not a member gossip knows", id)
}

// unsent forgets that c's changes were sent, so the next pass sends them.
func (s *Site) unsent(c command) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range c.Put {
		delete(s.inflight, Key{b.AOR, b.Contact})
	}
	for _, k := range c.Delete {
		delete(s.inflight, k)
	}
}

// applier writes the changes other boxes forwarded, as leader.
func (s *Site) applier(ctx context.Context) {
	defer s.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case data := <-s.applyCh:
			if s.raft.State() != raft.Leader {
				continue // the sender tries again with the new leader
			}
			if _, err := decodeCommand(data); err != nil {
				s.log.Warn("a box forwarded a change the site table cannot take", "err", err)
				continue
			}
			if err := s.raft.Apply(data, 5*time.Second).Error(); err != nil {
				s.log.Debug("writing a forwarded change to the site table", "err", err)
			}
		}
	}
}

// joiner joins the seeds that are not members, at start and every few
// seconds: a box that started first, or was cut off, finds the others
// when they come.
func (s *Site) joiner(ctx context.Context) {
	defer s.wg.Done()
	seeds := s.cfg.SeedAddrs()
	if len(seeds) == 0 {
		return
	}
	wait := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = 3 * time.Second
		known := map[string]bool{}
		for _, m := range s.aliveMembers() {
			known[m.addr] = true
		}
		var todo []string
		for _, seed := range seeds {
			if !known[seed] {
				todo = append(todo, seed)
			}
		}
		if len(todo) == 0 {
			continue
		}
		if n, err := s.ml.Join(todo); err != nil && n == 0 {
			s.log.Debug("joining the site's seeds", "seeds", todo, "err", err)
		}
	}
}

// delegate answers memberlist for the box.
type delegate struct{ s *Site }

func (d delegate) NodeMeta(limit int) []byte {
	d.s.mu.Lock()
	m := meta{Raft: net.JoinHostPort(d.s.cfg.Bind, strconv.Itoa(d.s.cfg.RaftPort)), State: d.s.hasState, SIP: d.s.o.SIP}
	d.s.mu.Unlock()
	b, _ := json.Marshal(m)
	if len(b) > limit {
		return nil
	}
	return b
}

func (d delegate) NotifyMsg(msg []byte) {
	if len(msg) < 2 || msg[0] != msgCommand {
		return
	}
	select {
	case d.s.applyCh <- slices.Clone(msg[1:]):
	default: // full: the sender tries again
	}
}

func (delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (delegate) LocalState(join bool) []byte                { return nil }
func (delegate) MergeRemoteState(buf []byte, join bool)     {}

// events logs members coming and going and wakes the loop.
type events struct{ s *Site }

func (e events) NotifyJoin(n *memberlist.Node) {
	e.s.see(n, true)
	e.s.log.Info("box joined the site", "box", n.Name, "addr", n.Address())
	e.s.poke()
}

func (e events) NotifyLeave(n *memberlist.Node) {
	e.s.see(n, false)
	e.s.log.Warn("box left the site", "box", n.Name, "addr", n.Address())
	e.s.poke()
}

func (e events) NotifyUpdate(n *memberlist.Node) {
	e.s.see(n, true)
	e.s.poke()
}
