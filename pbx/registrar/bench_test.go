package registrar

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/twinpbx/twinpbx/firmware/config"
	"github.com/twinpbx/twinpbx/firmware/store"
	"github.com/twinpbx/twinpbx/pbx/auth"
	"github.com/twinpbx/twinpbx/pbx/location"
)

// benchTx is a server transaction that keeps the last response.
type benchTx struct {
	sip.ServerTransaction // nil: only the methods below are used
	res                   *sip.Response
}

func (t *benchTx) Respond(res *sip.Response) error { t.res = res; return nil }
func (t *benchTx) Terminate()                      {}

// benchUsers is the number of extensions of the benchmark, as in the
// sipp REGISTER benchmark (bench/sipp/register.xml).
const benchUsers = 10000

type benchDir map[string]config.Extension

func (d benchDir) Extension(n string) (config.Extension, bool) { e, ok := d[n]; return e, ok }

func benchRegistrar(b *testing.B, p location.Persister) *Registrar {
	b.Helper()
	dir := benchDir{}
	for i := range benchUsers {
		n := strconv.Itoa(10000 + i)
		dir[n] = config.Extension{Number: n, Secret: "bench-secret-" + n}
	}
	log := slog.New(slog.DiscardHandler)
	loc, err := location.New(p, nil)
	if err != nil {
		b.Fatal(err)
	}
	a, err := auth.New(auth.Options{
		Realm: "branch.example", Key: []byte("0123456789abcdef0123456789abcdef"),
		Secrets: func(u string) (string, bool) { e, ok := dir[u]; return e.Secret, ok },
		Logger:  log, NonceTable: 1 << 16,
	})
	if err != nil {
		b.Fatal(err)
	}
	reg, err := New(Options{Location: loc, Auth: a, Directory: dir, Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	return reg
}

// benchRegister is the REGISTER of bench/sipp/register.xml, parsed from
// the wire as sipgo would.
func benchRegister(user string, n int64, cseq int, authz string) (*sip.Request, error) {
	var sb strings.Builder
	fmt.Fprintf(&sb, "REGISTER sip:127.0.0.1:5060 SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-%d-%d\r\n"+
		"Max-Forwards: 70\r\n"+
		"From: <sip:%s@127.0.0.1:5060>;tag=%d\r\n"+
		"To: <sip:%s@127.0.0.1:5060>\r\n"+
		"Call-ID: %d-bench@127.0.0.1\r\n"+
		"CSeq: %d REGISTER\r\n"+
		"Contact: <sip:%s@127.0.0.1:5070>\r\n"+
		"Expires: 3600\r\n", n, cseq, user, n, user, n, cseq, user)
	if authz != "" {
		sb.WriteString("Authorization: " + authz + "\r\n")
	}
	sb.WriteString("User-Agent: twinpbx-bench\r\nContent-Length: 0\r\n\r\n")
	m, err := sip.ParseMessage([]byte(sb.String()))
	if err != nil {
		return nil, err
	}
	req := m.(*sip.Request)
	req.SetSource("127.0.0.1:5070")
	return req, nil
}

// registerOnce runs one sipp-style registration: REGISTER, 401, REGISTER
// with credentials, 200.
func registerOnce(reg *Registrar, n int64) error {
	user := strconv.Itoa(10000 + int(n%benchUsers))
	req, err := benchRegister(user, n, 1, "")
	if err != nil {
		return err
	}
	tx := &benchTx{}
	reg.ServeRegister(req, tx)
	if tx.res == nil || tx.res.StatusCode != sip.StatusUnauthorized {
		return fmt.Errorf("first REGISTER answered %v", tx.res)
	}
	chal, err := digest.ParseChallenge(tx.res.GetHeader("WWW-Authenticate").Value())
	if err != nil {
		return err
	}
	cred, err := digest.Digest(chal, digest.Options{
		Method: "REGISTER", URI: "sip:127.0.0.1:5060", Username: user, Password: "bench-secret-" + user,
		Count: 1, Cnonce: strconv.FormatInt(n, 16),
	})
	if err != nil {
		return err
	}
	if req, err = benchRegister(user, n, 2, cred.String()); err != nil {
		return err
	}
	tx.res = nil
	reg.ServeRegister(req, tx)
	if tx.res == nil || tx.res.StatusCode != sip.StatusOK {
		return fmt.Errorf("REGISTER with credentials answered %v", tx.res)
	}
	return nil
}

// BenchmarkServeRegister measures one authenticated registration (two
// REGISTERs, 401 then 200), message parsing included, from many phones at
// once: with bindings in memory (the registrar's own cost) and in the
// store (fsync'd, group-committed).
func BenchmarkServeRegister(b *testing.B) {
	for _, bc := range []struct {
		name string
		p    func(b *testing.B) location.Persister
	}{
		{"memory", func(*testing.B) location.Persister { return newMemStore() }},
		{"store", func(b *testing.B) location.Persister {
			s, err := store.Open(b.TempDir(), store.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			return s
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			reg := benchRegistrar(b, bc.p(b))
			var n atomic.Int64
			b.SetParallelism(8)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := registerOnce(reg, n.Add(1)); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
