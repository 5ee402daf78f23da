package voicemail

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/emiago/sipgo/sip"
)

// dialog is our side of a dialog the mailbox holds as UAS: a deposit or
// listening call, or a message-summary subscription.
type dialog struct {
	callID       string
	localTag     string
	localURI     sip.Uri
	remoteTag    string
	remoteURI    sip.Uri
	remoteTarget sip.Uri
	routes       []sip.Uri
	transport    string
	peer         string

	mu  sync.Mutex
	seq uint32
}

// newDialog reads the dialog an initial request (INVITE, SUBSCRIBE)
// starts, with localTag as our To tag.
func newDialog(req *sip.Request, localTag string) (*dialog, error) {
	from, to, cid, ct := req.From(), req.To(), req.CallID(), req.Contact()
	if from == nil || to == nil || cid == nil || ct == nil {
		return nil, errors.New("missing From, To, Call-ID or Contact")
	}
	d := &dialog{
		callID:       cid.Value(),
		localTag:     localTag,
		localURI:     to.Address,
		remoteURI:    from.Address,
		remoteTarget: ct.Address,
		transport:    strings.ToUpper(req.Transport()),
		peer:         req.Source(),
		seq:          1,
	}
	d.remoteTag, _ = from.Params.Get("tag")
	if d.remoteTag == "" {
		return nil, errors.New("no tag in From")
	}
	for _, h := range req.GetHeaders("Record-Route") {
		if rr, ok := h.(*sip.RecordRouteHeader); ok {
			d.routes = append(d.routes, rr.Address)
		}
	}
	return d, nil
}

// request builds our next in-dialog request, leaving from the listener
// named by us.
func (d *dialog) request(method sip.RequestMethod, us sip.Uri) *sip.Request {
	d.mu.Lock()
	d.seq++
	seq := d.seq
	d.mu.Unlock()
	req := sip.NewRequest(method, d.remoteTarget)
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: d.transport, Host: us.Host, Port: us.Port, Params: sip.NewParams()}
	via.Params.Add("branch", sip.GenerateBranch())
	via.Params.Add("rport", "")
	req.AppendHeader(via)
	for _, r := range d.routes {
		req.AppendHeader(&sip.RouteHeader{Address: r})
	}
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	from := &sip.FromHeader{Address: d.localURI, Params: sip.NewParams()}
	from.Params.Add("tag", d.localTag)
	req.AppendHeader(from)
	to := &sip.ToHeader{Address: d.remoteURI, Params: sip.NewParams()}
	to.Params.Add("tag", d.remoteTag)
	req.AppendHeader(to)
	cid := sip.CallIDHeader(d.callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: seq, MethodName: method})
	if method == sip.NOTIFY {
		req.AppendHeader(&sip.ContactHeader{Address: us})
	}
	req.SetTransport(d.transport)
	req.SetDestination(d.peer)
	return req
}

// response builds our answer to req on the dialog: our To tag, and for
// 2xx our Contact.
func (d *dialog) response(req *sip.Request, code int, reason string, us sip.Uri) *sip.Response {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	if to := res.To(); to != nil && !to.Params.Has("tag") {
		to.Params.Add("tag", d.localTag)
	}
	if code >= 200 && code < 300 {
		res.AppendHeader(&sip.ContactHeader{Address: us})
	}
	return res
}

func (d *dialog) String() string { return fmt.Sprintf("dialog %s", d.callID) }
