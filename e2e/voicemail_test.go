package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twinpbx/twinpbx/firmware/config"
)

// TestVoicemail leaves a message for an extension that is not registered,
// checks it is stored (caller, length) and survives a restart of the box,
// then has the owner, subscribed to message-summary, dial the voicemail
// number and delete it with DTMF 7.
func TestVoicemail(t *testing.T) {
	needTools(t, "sipp")
	p := startPBXWith(t, func(c *config.Config) {
		c.Voicemail = &config.Voicemail{}
	}, alice, bob)

	// Bob calls Alice, who is not registered: the mailbox answers; 3 s of
	// tone after the greeting (about 2 s), then Bob hangs up.
	dep := runSipp(t, sippOpts{
		scenario: "uac-voicemail.xml", remote: p.addr(), service: alice.Number,
		user: bob.Number, pass: bob.Secret, pause: 3300 * time.Millisecond, keys: caller(bob),
	}, 0)
	rec := p.waitCDR(func(r map[string]string) bool {
		return r["call_id"] == sippCallID(dep) && r["disposition"] == "VOICEMAIL"
	})
	if rec["caller"] != bob.Number || rec["callee"] != alice.Number || rec["hangup_by"] != "caller" {
		t.Errorf("the deposit's CDR: %v", rec)
	}
	saved := regexp.MustCompile(`msg="message saved".*duration=([0-9.]+)s`)
	var m []string
	waitFor(t, 10*time.Second, "the message to be saved", func() bool {
		m = saved.FindStringSubmatch(p.log.String())
		return m != nil
	})
	// The tone starts 2.5 s after the answer, past the greeting (about
	// 1.9 s; longer on a loaded machine, which costs the tone's start).
	if d, _ := strconv.ParseFloat(m[1], 64); d < 1.5 || d > 3.6 {
		t.Errorf("message of %ss, want up to 3 s (the tone)", m[1])
	}

	// The box running, the list shows the message and the export (over
	// the control socket) writes one WAV file; stopped, the export from
	// its store writes the same file.
	out, err := exec.Command(pbxBinary, "voicemail", "list", "--data", p.dataDir).CombinedOutput()
	if err != nil || !regexp.MustCompile(`(?m)^`+alice.Number+`\t\S+\t\S+\t`+bob.Number+`\t[0-9.]+s\tPCM[AU]\tnew$`).Match(out) {
		t.Errorf("twinpbx voicemail list on the running box: %v: %q", err, out)
	}
	running := exportVoicemail(t, p, alice.Number)
	p.stop()
	stopped := exportVoicemail(t, p, alice.Number)
	if !bytes.Equal(running, stopped) {
		t.Errorf("the running box exported %d bytes, the stopped box %d, not the same", len(running), len(stopped))
	}
	p.start()

	// Alice's phone subscribes: a message waits. Then she listens and
	// deletes it; the phone hears that none waits.
	sub := startSipp(t, sippOpts{
		scenario: "subscribe-mwi.xml", remote: p.addr(), service: alice.Number,
		user: alice.Number, pass: alice.Secret, keys: caller(alice),
	})
	waitFor(t, 20*time.Second, "the first NOTIFY", func() bool {
		return strings.Contains(p.log.String(), `msg="message-summary subscription"`)
	})
	lis := runSipp(t, sippOpts{
		scenario: "uac-voicemail-listen.xml", remote: p.addr(), service: config.DefaultVoicemailNumber,
		user: alice.Number, pass: alice.Secret, pause: 2500 * time.Millisecond, keys: caller(alice),
	}, 0)
	sub.wait(0)
	if !strings.Contains(p.log.String(), `msg="message deleted"`) {
		t.Error("the PBX did not log the deletion")
	}
	p.waitCDR(func(r map[string]string) bool {
		return r["call_id"] == sippCallID(lis) && r["disposition"] == "VOICEMAIL"
	})
}

// exportVoicemail exports ext's messages with the twinpbx command and
// returns the one WAV file it must write for a message from bob.
func exportVoicemail(t *testing.T, p *pbx, ext string) []byte {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command(pbxBinary, "voicemail", "export", "--data", p.dataDir, ext, dir).CombinedOutput()
	if err != nil {
		t.Fatalf("twinpbx voicemail export: %v: %s", err, out)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*-"+bob.Number+"-*.wav"))
	if len(files) != 1 {
		t.Fatalf("exported %v (%s), want one file for caller %s", files, out, bob.Number)
	}
	b, err := os.ReadFile(files[0])
	if err != nil || len(b) < 12000 || len(b) > 29000 || !bytes.HasPrefix(b, []byte("RIFF")) {
		t.Errorf("exported WAV of %d bytes: %v, want a WAV file with up to 24000 bytes of audio", len(b), err)
	}
	return b
}
