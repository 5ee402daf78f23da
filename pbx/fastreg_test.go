package pbx

import (
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

const testRegister = "REGISTER sip:127.0.0.1 SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-%s;rport\r\n" +
	"From: <sip:100@127.0.0.1>;tag=a1\r\n" +
	"To: <sip:100@127.0.0.1>\r\n" +
	"Call-ID: fast-1\r\n" +
	"CSeq: 1 REGISTER\r\n" +
	"Contact: <sip:100@127.0.0.1:5999>\r\n" +
	"Content-Length: 0\r\n\r\n"

func register(branch string) []byte {
	return []byte(strings.Replace(testRegister, "%s", branch, 1))
}

// registerWithCredentials is a REGISTER answering a challenge: handled on
// a worker, where the registrar may wait for the store.
func registerWithCredentials(branch string) []byte {
	return []byte(strings.Replace(string(register(branch)), "Content-Length: 0\r\n",
		`Authorization: Digest username="100", realm="r", nonce="n", uri="sip:127.0.0.1", response="00"`+"\r\nContent-Length: 0\r\n", 1))
}

// fastPair is a registerConn on a loopback socket, a phone socket that
// talks to it, and the datagrams the conn passed on to its reader (what
// sipgo would see).
type fastPair struct {
	conn   *registerConn
	phone  net.PacketConn
	passed chan string
}

func newFastPair(t *testing.T, handle func(*sip.Request, sip.ServerTransaction)) *fastPair {
	t.Helper()
	srv, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	phone, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close(); phone.Close() })
	fp := &fastPair{conn: newRegisterConn(srv, handle, nil, newWorkers(4)), phone: phone, passed: make(chan string, 16)}
	go func() {
		buf := make([]byte, 65535)
		for {
			n, _, err := fp.conn.ReadFrom(buf)
			if err != nil {
				return
			}
			fp.passed <- string(buf[:n])
		}
	}()
	return fp
}

func (fp *fastPair) send(t *testing.T, b []byte) {
	t.Helper()
	if _, err := fp.phone.WriteTo(b, fp.conn.LocalAddr()); err != nil {
		t.Fatal(err)
	}
}

// answer reads the phone's next datagram, or "" after wait.
func (fp *fastPair) answer(t *testing.T, wait time.Duration) string {
	t.Helper()
	_ = fp.phone.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 65535)
	n, _, err := fp.phone.ReadFrom(buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

func TestRegisterConnAnswersRegisterItself(t *testing.T) {
	var mu sync.Mutex
	var got []*sip.Request
	fp := newFastPair(t, guard(func(req *sip.Request, tx sip.ServerTransaction) {
		mu.Lock()
		got = append(got, req)
		mu.Unlock()
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil))
	}, nil, nil))
	fp.send(t, register("one"))
	res := fp.answer(t, 10*time.Second)
	if !strings.HasPrefix(res, "SIP/2.0 200 OK\r\n") {
		t.Fatalf("answer %q, want a 200", res)
	}
	// rport filled in from the datagram's source, as sipgo does.
	port := fp.phone.LocalAddr().(*net.UDPAddr).Port
	if !strings.Contains(res, "rport="+strconv.Itoa(port)) || !strings.Contains(res, "received=127.0.0.1") {
		t.Errorf("answer without received/rport of the source:\n%s", res)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0].Transport() != "UDP" || got[0].Source() != fp.phone.LocalAddr().String() {
		t.Fatalf("handler saw %d requests (%v)", len(got), got)
	}
	select {
	case m := <-fp.passed:
		t.Errorf("the REGISTER also reached sipgo: %q", m)
	default:
	}
}

func TestRegisterConnPassesOthersOn(t *testing.T) {
	fp := newFastPair(t, func(req *sip.Request, tx sip.ServerTransaction) {
		t.Errorf("handler called for %s", req.Method)
	})
	tests := []struct{ name, datagram string }{
		{"options", strings.ReplaceAll(string(register("o")), "REGISTER", "OPTIONS")},
		{"response", "SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"},
		{"garbage after REGISTER", "REGISTER \x00\x01 nonsense"},
		{"keep-alive", "\r\n\r\n"},
	}
	for _, tt := range tests {
		fp.send(t, []byte(tt.datagram))
		select {
		case m := <-fp.passed:
			if m != tt.datagram {
				t.Errorf("%s: passed on %q, want it unchanged", tt.name, m)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: not passed on", tt.name)
		}
	}
}

// A retransmission that arrives while its first copy is being handled is
// absorbed (its answer is coming); once answered, the same branch is a
// new request, as with sipgo's transactions, which the registrar ends at
// once.
func TestRegisterConnAbsorbsRetransmissionInProgress(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	calls, heldR := 0, false
	fp := newFastPair(t, func(req *sip.Request, tx sip.ServerTransaction) {
		// Workers may take r and r2 in either order: hold r's first copy
		// by its branch, not the first call.
		via := req.Via()
		mu.Lock()
		calls++
		branch, _ := via.Params.Get("branch")
		hold := !heldR && branch == "z9hG4bK-r"
		if hold {
			heldR = true
		}
		mu.Unlock()
		if hold {
			<-release
		}
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil))
	})
	fp.send(t, registerWithCredentials("r"))
	fp.send(t, registerWithCredentials("r"))  // while the first waits
	fp.send(t, registerWithCredentials("r2")) // another transaction goes on meanwhile
	if a := fp.answer(t, 10*time.Second); !strings.Contains(a, "branch=z9hG4bK-r2") {
		t.Fatalf("first answer %q, want r2's", a)
	}
	close(release)
	if a := fp.answer(t, 10*time.Second); !strings.Contains(a, "branch=z9hG4bK-r;") {
		t.Fatalf("second answer %q, want r's", a)
	}
	if a := fp.answer(t, 300*time.Millisecond); a != "" {
		t.Fatalf("the retransmission was answered too: %q", a)
	}
	mu.Lock()
	if calls != 2 {
		t.Errorf("handler ran %d times, want 2 (the retransmission absorbed)", calls)
	}
	mu.Unlock()
	fp.send(t, registerWithCredentials("r"))
	if a := fp.answer(t, 10*time.Second); !strings.Contains(a, "branch=z9hG4bK-r;") {
		t.Fatalf("after the answer the same branch got %q", a)
	}
}

// Behind the serving gate a standby answers nothing; a REGISTER without a
// mandatory header gets a 400, as through sipgo.
func TestRegisterConnGuarded(t *testing.T) {
	var serving atomic.Bool
	fp := newFastPair(t, guard(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil))
	}, serving.Load, nil))
	fp.send(t, register("g1"))
	if a := fp.answer(t, 300*time.Millisecond); a != "" {
		t.Fatalf("a box that does not serve answered %q", a)
	}
	serving.Store(true)
	noCallID := strings.Replace(string(register("g2")), "Call-ID: fast-1\r\n", "", 1)
	fp.send(t, []byte(noCallID))
	if a := fp.answer(t, 10*time.Second); !strings.HasPrefix(a, "SIP/2.0 400 Missing Call-ID header") {
		t.Fatalf("answer %q, want 400 Missing Call-ID header", a)
	}
}
