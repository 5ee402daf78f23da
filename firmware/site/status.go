package site

import (
	"fmt"
	"sort"
	"time"

	"github.com/twinpbx/twinpbx/firmware/config"
)

// Status is what `twinpbx status` shows of the site.
type Status struct {
	Name string `json:"name"`
	// State is this box's raft state: Leader, Follower, Candidate.
	State  string `json:"state"`
	Leader string `json:"leader"`
	// Members are the boxes of the site with their state: alive, or
	// gone for a box gossip saw before (or that is a voter) but that died
	// or left.
	Members []Member `json:"members"`
	// Voters are the boxes in the replicated log's configuration.
	Voters []string `json:"voters"`
	// Bindings is the size of the site table; Pending the number of this
	// box's registration changes the table does not show yet.
	Bindings int `json:"bindings"`
	Pending  int `json:"pending"`
	// Forward and Timing are the box's site.forward and site.timing.
	Forward string `json:"forward"`
	Timing  string `json:"timing"`
	// Alarms say what needs a person's attention; empty when healthy.
	Alarms []string `json:"alarms,omitempty"`
}

// Member is one box as gossip sees it.
type Member struct {
	Name  string `json:"name"`
	Addr  string `json:"addr"`
	State string `json:"state"`
	// SIP is where the box takes forwarded calls; empty: it takes none.
	SIP string `json:"sip,omitempty"`
}

// leaderlessAlarm is how long the site may be without a leader (an
// election) before the alarm is raised.
const leaderlessAlarm = 3 * time.Second

// Status reports the box's view of the site.
func (s *Site) Status() Status {
	st := Status{Name: s.name, State: s.raft.State().String(), Bindings: s.table.Len(), Members: []Member{}, Voters: []string{},
		Forward: s.cfg.Forward, Timing: s.cfg.Timing}
	_, id := s.raft.LeaderWithID()
	st.Leader = string(id)
	listed := map[string]bool{}
	for _, m := range s.members() {
		state := "alive"
		if !m.alive {
			state = "gone"
		}
		st.Members = append(st.Members, Member{Name: m.name, Addr: m.addr, State: state, SIP: m.meta.SIP})
		listed[m.name] = true
	}
	if f := s.raft.GetConfiguration(); f.Error() == nil {
		for _, v := range f.Configuration().Servers {
			st.Voters = append(st.Voters, string(v.ID))
		}
		sort.Strings(st.Voters)
	}
	for _, v := range st.Voters {
		if !listed[v] {
			st.Members = append(st.Members, Member{Name: v, State: "gone"})
		}
	}
	sort.Slice(st.Members, func(i, j int) bool { return st.Members[i].Name < st.Members[j].Name })
	alive := 0
	for _, m := range st.Members {
		if m.State == "alive" {
			alive++
		}
	}
	s.mu.Lock()
	st.Pending = s.pending
	has, since := s.hasState, s.leaderless
	s.mu.Unlock()
	switch {
	case !has:
		st.Alarms = append(st.Alarms, fmt.Sprintf("site not formed yet: %d of %d boxes have met (site.expect); phones registered here are served, calls to other boxes' phones are not found", alive, s.cfg.Expect))
	case !since.IsZero() && s.o.Now().Sub(since) >= leaderlessAlarm:
		st.Alarms = append(st.Alarms, fmt.Sprintf("site without quorum for %s: this box serves its own registrations only, and other boxes do not learn of them until a majority of the voters is back", s.o.Now().Sub(since).Round(time.Second)))
	}
	if s.o.SIP == "" && s.cfg.Forward != config.SiteForwardNever {
		st.Alarms = append(st.Alarms, "this box takes no forwarded calls (it has no UDP sip.listen entry): the other boxes ring its phones directly")
	}
	for _, m := range st.Members {
		if m.State != "alive" && m.Name != s.name {
			st.Alarms = append(st.Alarms, fmt.Sprintf("box %s (%s) is %s", m.Name, m.Addr, m.State))
		}
	}
	return st
}
