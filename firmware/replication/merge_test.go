package replication

import (
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/store"
	"github.com/twinpbx/twinpbx/pbx/cdr"
	"github.com/twinpbx/twinpbx/pbx/location"
)

type config struct {
	version uint64
	text    string
}

type side struct {
	configs  []config
	bindings []location.Binding
	cdrs     []cdr.Record
}

func (s side) fill(t *testing.T, st *store.Store) {
	t.Helper()
	for _, c := range s.configs {
		if err := st.SaveConfig([]byte(c.text), c.version); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range s.bindings {
		if err := st.SaveBinding(b); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range s.cdrs {
		if err := st.AppendCDR(r); err != nil {
			t.Fatal(err)
		}
	}
}

func updatedAt(b location.Binding, d time.Duration, source string) location.Binding {
	b.Updated = b.Updated.Add(d)
	b.Source = source
	return b
}

func TestMerge(t *testing.T) {
	b0, b1, b2 := binding(0), binding(1), binding(2)
	r0, r1, r2 := record(0), record(1), record(2)
	r1other := r1
	r1other.SIPCode = 487
	tests := []struct {
		name           string
		local, remote  side
		want           MergeReport
		wantConfig     config
		wantBindings   []location.Binding
		wantCDRs       []cdr.Record
		wantConfigList []uint64
	}{
		{
			name:  "remote config newer wins, with its history",
			local: side{configs: []config{{1, "v1"}}}, remote: side{configs: []config{{1, "v1"}, {2, "v2"}, {3, "v3"}}},
			want:       MergeReport{ConfigVersions: []uint64{2, 3}},
			wantConfig: config{3, "v3"}, wantConfigList: []uint64{1, 2, 3},
		},
		{
			name:  "local config newer stays",
			local: side{configs: []config{{4, "v4"}}}, remote: side{configs: []config{{3, "v3"}}},
			wantConfig: config{4, "v4"}, wantConfigList: []uint64{4},
		},
		{
			name:  "same version, same text",
			local: side{configs: []config{{2, "same"}}}, remote: side{configs: []config{{2, "same"}}},
			wantConfig: config{2, "same"}, wantConfigList: []uint64{2},
		},
		{
			name:  "same version, different text: conflict, local kept",
			local: side{configs: []config{{2, "ours"}}}, remote: side{configs: []config{{2, "theirs"}}},
			want:       MergeReport{ConfigConflict: true, ConfigVersion: 2},
			wantConfig: config{2, "ours"}, wantConfigList: []uint64{2},
		},
		{
			name:  "no config locally",
			local: side{}, remote: side{configs: []config{{5, "v5"}}},
			want:       MergeReport{ConfigVersions: []uint64{5}},
			wantConfig: config{5, "v5"}, wantConfigList: []uint64{5},
		},
		{
			name: "bindings: newest updated wins per contact, others united",
			local: side{bindings: []location.Binding{
				updatedAt(b0, time.Minute, "udp:10.0.0.1:5060"), // newer here
				b1, // older here
			}},
			remote: side{bindings: []location.Binding{
				b0,
				updatedAt(b1, time.Minute, "udp:10.0.0.2:5060"),
				b2, // only there
			}},
			want: MergeReport{Bindings: 2},
			wantBindings: []location.Binding{
				updatedAt(b0, time.Minute, "udp:10.0.0.1:5060"),
				updatedAt(b1, time.Minute, "udp:10.0.0.2:5060"),
				b2,
			},
		},
		{
			name:  "bindings: equal updated keeps local",
			local: side{bindings: []location.Binding{updatedAt(b0, 0, "udp:10.0.0.1:5060")}}, remote: side{bindings: []location.Binding{updatedAt(b0, 0, "udp:10.0.0.2:5060")}},
			wantBindings: []location.Binding{updatedAt(b0, 0, "udp:10.0.0.1:5060")},
		},
		{
			name:  "CDRs: union, local kept on a clash",
			local: side{cdrs: []cdr.Record{r0, r1}}, remote: side{cdrs: []cdr.Record{r1other, r2}},
			want:     MergeReport{CDRs: 1, CDRsDiffering: 1},
			wantCDRs: []cdr.Record{r0, r1, r2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			local := openStore(t, t.TempDir(), store.Options{})
			remote := openStore(t, t.TempDir(), store.Options{})
			tt.local.fill(t, local)
			tt.remote.fill(t, remote)
			remoteBefore := dump(t, remote)
			got, err := Merge(local, remote)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("report %+v, want %+v", got, tt.want)
			}
			if tt.wantConfig.version != 0 {
				v, text, err := local.LatestConfig()
				if err != nil || v != tt.wantConfig.version || string(text) != tt.wantConfig.text {
					t.Errorf("config %d %q (%v), want %d %q", v, text, err, tt.wantConfig.version, tt.wantConfig.text)
				}
				if vs, _ := local.ConfigVersions(); !reflect.DeepEqual(vs, tt.wantConfigList) {
					t.Errorf("config versions %v, want %v", vs, tt.wantConfigList)
				}
			}
			bs, err := local.LoadBindings()
			if err != nil {
				t.Fatal(err)
			}
			sortBindings(bs)
			sortBindings(tt.wantBindings)
			if !sameBindings(bs, tt.wantBindings) {
				t.Errorf("bindings:\n got %+v\nwant %+v", bs, tt.wantBindings)
			}
			rs, err := local.CDRs(time.Time{}, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			if len(rs) != len(tt.wantCDRs) {
				t.Fatalf("%d CDRs, want %d", len(rs), len(tt.wantCDRs))
			}
			for i := range rs {
				if rs[i].ID != tt.wantCDRs[i].ID || rs[i].SIPCode != tt.wantCDRs[i].SIPCode {
					t.Errorf("CDR %d: %s/%d, want %s/%d", i, rs[i].ID, rs[i].SIPCode, tt.wantCDRs[i].ID, tt.wantCDRs[i].SIPCode)
				}
			}
			if !reflect.DeepEqual(remoteBefore, dump(t, remote)) {
				t.Error("Merge wrote to the remote store")
			}
			// Merging again changes nothing.
			again, err := Merge(local, remote)
			if err != nil {
				t.Fatal(err)
			}
			if again.Bindings != 0 || again.CDRs != 0 || len(again.ConfigVersions) != 0 {
				t.Errorf("second merge took more: %+v", again)
			}
		})
	}
}

func sortBindings(bs []location.Binding) {
	sort.Slice(bs, func(i, j int) bool {
		if bs[i].AOR != bs[j].AOR {
			return bs[i].AOR < bs[j].AOR
		}
		return bs[i].Contact < bs[j].Contact
	})
}

func sameBindings(a, b []location.Binding) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].AOR != b[i].AOR || a[i].Contact != b[i].Contact || a[i].Source != b[i].Source || !a[i].Updated.Equal(b[i].Updated) {
			return false
		}
	}
	return true
}

// Merge's writes on the active replicate to the standby like any other.
func TestMergeReplicates(t *testing.T) {
	p := newPair(t, pairOpts{})
	p.waitSynced(t)
	remote := openStore(t, t.TempDir(), store.Options{})
	side{configs: []config{{9, "v9"}}, bindings: []location.Binding{binding(3)}, cdrs: []cdr.Record{record(3)}}.fill(t, remote)
	if _, err := Merge(p.active, remote); err != nil {
		t.Fatal(err)
	}
	p.waitSynced(t)
}
