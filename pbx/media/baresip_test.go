package media

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// TestRealPhone calls from a real SIP phone (baresip) into a tiny UAS
// that anchors the media in a session: the phone must accept the
// rewritten SDP, send its RTP and RTCP to the relay, and get the far
// end's packets back at the address the relay latched.
func TestRealPhone(t *testing.T) {
	if testing.Short() {
		t.Skip("starts baresip")
	}
	bin, err := exec.LookPath("baresip")
	if err != nil {
		t.Skip("baresip not installed")
	}
	r := newTestRelay(t, 47800, 47899)
	far := newPhone(t) // the callee, played by the test
	s, err := r.Open("real-phone")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })

	sipConn := listen(t)
	sipPort := port(sipConn)
	ua, err := sipgo.NewUA()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ua.Close() })
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := sipgo.NewClient(ua)
	if err != nil {
		t.Fatal(err)
	}
	dialogs := sipgo.NewDialogServerCache(cli, sip.ContactHeader{Address: sip.Uri{User: "bob", Host: "127.0.0.1", Port: sipPort}})
	offers := make(chan []byte, 1)
	srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		dlg, err := dialogs.ReadInvite(req, tx)
		if err != nil {
			return
		}
		toFar, err := s.Rewrite(A, req.Body())
		if err != nil {
			dlg.Respond(sip.StatusNotAcceptableHere, err.Error(), nil)
			return
		}
		select {
		case offers <- toFar:
		default:
		}
		answer, err := s.Rewrite(B, far.sdp("127.0.0.1"))
		if err != nil {
			dlg.Respond(sip.StatusNotAcceptableHere, err.Error(), nil)
			return
		}
		dlg.RespondSDP(answer)
	})
	srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) { dialogs.ReadAck(req, tx) })
	srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) { dialogs.ReadBye(req, tx) })
	go srv.ServeUDP(sipConn)

	dir := t.TempDir()
	writeTone(t, filepath.Join(dir, "tone.wav"), 8*time.Second)
	phonePort := freePort(t)
	config := fmt.Sprintf(`sip_listen 127.0.0.1:%d
net_interface 127.0.0.1
module_path /usr/lib/baresip/modules
module g711.so
module aufile.so
module account.so
module menu.so
audio_source aufile,%s
audio_player aufile,%s
rtcp_mux no
`, phonePort, filepath.Join(dir, "tone.wav"), filepath.Join(dir, "heard.wav"))
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "accounts"), []byte("<sip:alice@127.0.0.1;transport=udp>;regint=0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "-f", dir, "-t", "30", "-e", fmt.Sprintf("/dial sip:bob@127.0.0.1:%d", sipPort))
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			t.Logf("baresip said:\n%s", out.String())
		}
	})

	select {
	case <-offers:
	case <-time.After(10 * time.Second):
		t.Fatal("no INVITE from baresip")
	}

	// The far end receives the phone's audio through the relay and
	// sends its own back; the phone's RTCP arrives on the RTCP port.
	forB := netip.AddrPortFrom(loopback, uint16(s.Port(B)))
	buf := make([]byte, 2048)
	far.rtp.SetReadDeadline(time.Now().Add(10 * time.Second))
	for n := 0; n < 25; n++ {
		m, src, err := far.rtp.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("after %d packets from the phone: %v", n, err)
		}
		if src != forB {
			t.Fatalf("packet from %v, want the relay %v", src, forB)
		}
		if m < 12 || buf[0]>>6 != 2 || (buf[1]&0x7f != 0 && buf[1]&0x7f != 8) {
			t.Fatalf("not G.711 RTP: %x", buf[:min(m, 16)])
		}
		// Echo it: the phone hears itself through the relay.
		far.rtp.WriteToUDPAddrPort(buf[:m], forB)
	}
	waitFor(t, "the phone's echo to be relayed", func() bool { return s.Stats().Legs[B].Packets >= 25 })
	st := s.State()
	if !st.Legs[A].LatchedRTP.IsValid() || st.Legs[A].LatchedRTP != st.Legs[A].SDPRTP {
		t.Errorf("latched %v, the phone's SDP said %v", st.Legs[A].LatchedRTP, st.Legs[A].SDPRTP)
	}
	far.rtcp.SetReadDeadline(time.Now().Add(15 * time.Second))
	m, _, err := far.rtcp.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("no RTCP from the phone: %v", err)
	}
	if m < 8 || buf[1] < 200 || buf[1] > 204 {
		t.Errorf("not RTCP: %x", buf[:m])
	}
	if d := s.Stats().Legs[A].Dropped; d != 0 {
		t.Errorf("%d packets from the phone dropped", d)
	}
}

// freePort returns a UDP port that was free a moment ago, for a program
// that binds it itself.
func freePort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return port(c)
}

// writeTone writes an 8 kHz 16-bit mono WAV of a 440 Hz tone.
func writeTone(t *testing.T, path string, d time.Duration) {
	t.Helper()
	n := int(d.Seconds() * 8000)
	data := make([]byte, 2*n)
	for i := range n {
		v := int16(8000 * math.Sin(2*math.Pi*440*float64(i)/8000))
		binary.LittleEndian.PutUint16(data[2*i:], uint16(v))
	}
	var h bytes.Buffer
	h.WriteString("RIFF")
	binary.Write(&h, binary.LittleEndian, uint32(36+len(data)))
	h.WriteString("WAVEfmt ")
	for _, v := range []any{uint32(16), uint16(1), uint16(1), uint32(8000), uint32(16000), uint16(2), uint16(16)} {
		binary.Write(&h, binary.LittleEndian, v) // fmt: PCM, mono, 8 kHz, 16 bit
	}
	h.WriteString("data")
	binary.Write(&h, binary.LittleEndian, uint32(len(data)))
	h.Write(data)
	if err := os.WriteFile(path, h.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
