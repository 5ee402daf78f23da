package tui

import (
	"context"
	"strings"

	tea "github.com/charmbracelet/bubbletea"
)

// SetupModel is the full-screen wizard: one question per screen, at most
// 80×24, no colours or mouse needed.
type SetupModel struct {
	w     *Wizard
	ctx   context.Context
	idx   int
	input []rune
	sel   int // highlighted choice
	err   string
	warn  string
	// warned is the value the warning was shown for; Enter on it again
	// keeps it.
	warned string

	applying bool
	done     bool
	message  string
	failed   bool
	width    int
}

// NewSetupModel returns the wizard's bubbletea model.
func NewSetupModel(ctx context.Context, w *Wizard) SetupModel {
	m := SetupModel{w: w, ctx: ctx, width: 80}
	m.enter(0)
	return m
}

// Done reports whether the wizard ended; Failed whether applying failed.
func (m SetupModel) Done() bool   { return m.done }
func (m SetupModel) Failed() bool { return m.failed }

// Message is what applying the config reported.
func (m SetupModel) Message() string { return m.message }

// enter moves to question i and prepares its input.
func (m *SetupModel) enter(i int) {
	if i < len(m.w.qs) && !m.w.visible(i) {
		i = m.w.next(i)
	}
	m.idx = i
	m.err, m.warn, m.warned = "", "", ""
	m.input = nil
	m.sel = 0
	if i >= len(m.w.qs) {
		return
	}
	q := m.w.qs[i]
	cur := m.w.get(q.id)
	if q.kind == kindChoice {
		want := cur
		if want == "" {
			want = m.w.defaultFor(i)
		}
		for j, c := range q.choices(m.w) {
			if c.value == want {
				m.sel = j
			}
		}
	} else if q.kind == kindText && cur != "" {
		m.input = []rune(cur)
	}
}

type appliedMsg struct {
	text string
	err  error
}

func (m SetupModel) Init() tea.Cmd { return nil }

func (m SetupModel) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width = msg.Width
		return m, nil
	case appliedMsg:
		m.applying, m.done = false, true
		if msg.err != nil {
			m.failed = true
			m.message = m.w.t("apply.fail", msg.err.Error())
		} else {
			m.message = msg.text
		}
		return m, nil
	case tea.KeyMsg:
		return m.key(msg)
	}
	return m, nil
}

func (m SetupModel) key(k tea.KeyMsg) (tea.Model, tea.Cmd) {
	if k.Type == tea.KeyCtrlC {
		return m, tea.Quit
	}
	if m.done {
		if k.Type == tea.KeyEnter || k.String() == "q" {
			return m, tea.Quit
		}
		return m, nil
	}
	if m.applying {
		return m, nil
	}
	q := m.w.qs[m.idx]
	switch k.Type {
	case tea.KeyEsc:
		m.enter(m.w.prev(m.idx))
		return m, nil
	case tea.KeyEnter:
		return m.submit()
	}
	switch q.kind {
	case kindChoice:
		n := len(q.choices(m.w))
		switch k.String() {
		case "up", "k", "shift+tab":
			m.sel = (m.sel + n - 1) % n
		case "down", "j", "tab":
			m.sel = (m.sel + 1) % n
		default:
			if s := k.String(); len(s) == 1 && s[0] >= '1' && s[0] <= '9' && int(s[0]-'1') < n {
				m.sel = int(s[0] - '1')
			}
		}
	case kindText, kindSecret:
		switch k.Type {
		case tea.KeyBackspace:
			if len(m.input) > 0 {
				m.input = m.input[:len(m.input)-1]
			}
		case tea.KeyCtrlU:
			m.input = nil
		case tea.KeyRunes, tea.KeySpace:
			if len(m.input) < 200 {
				for _, r := range k.Runes {
					if r >= ' ' {
						m.input = append(m.input, r)
					}
				}
			}
		}
		m.err = ""
	}
	return m, nil
}

func (m SetupModel) submit() (tea.Model, tea.Cmd) {
	q := m.w.qs[m.idx]
	var v string
	switch q.kind {
	case kindChoice:
		v = q.choices(m.w)[m.sel].value
	case kindInfo:
		v = "ok"
	case kindReview:
		return m.apply()
	default:
		v = string(m.input)
	}
	confirmed := m.warn != "" && v == m.warned
	e, wn := m.w.answer(m.ctx, m.idx, v, confirmed)
	if e != "" {
		m.err, m.warn = e, ""
		if q.kind == kindSecret {
			m.input = nil
		}
		return m, nil
	}
	if wn != "" {
		m.err, m.warn, m.warned = "", wn, v
		return m, nil
	}
	m.enter(m.w.next(m.idx))
	return m, nil
}

func (m SetupModel) apply() (tea.Model, tea.Cmd) {
	r, err := m.w.Result()
	if err != nil {
		m.err = m.w.t("e.config", err.Error())
		return m, nil
	}
	m.applying = true
	w, ctx := m.w, m.ctx
	return m, func() tea.Msg {
		if w.opts.Apply == nil {
			return appliedMsg{text: w.t("applied")}
		}
		text, err := w.opts.Apply(ctx, r)
		return appliedMsg{text: text, err: err}
	}
}

// View draws the current page. It fits 80×24 for every question.
func (m SetupModel) View() string {
	var b strings.Builder
	w := m.w
	line := func(s string) { b.WriteString(s); b.WriteByte('\n') }
	if m.done || m.idx >= len(w.qs) {
		line(w.t("title") + " · " + w.t("page.done"))
		line(strings.Repeat("-", 40))
		line("")
		for _, l := range wrap(m.message, 78) {
			line(l)
		}
		line("")
		line(w.t("keys.done"))
		return b.String()
	}
	q := w.qs[m.idx]
	n, total := w.position(m.idx)
	line(w.t("title") + " · " + w.t("step", n, total) + " · " + w.t(q.page))
	line(strings.Repeat("-", 40))
	if q.help != "" {
		for _, l := range wrap(w.t(q.help), 78) {
			line(l)
		}
	}
	if q.body != nil {
		for _, l := range q.body(w) {
			line(l)
		}
	}
	line("")
	switch q.kind {
	case kindChoice:
		line(w.t("q." + q.id))
		for j, c := range q.choices(w) {
			mark := "  "
			if j == m.sel {
				mark = "> "
			}
			line(mark + string(rune('1'+j)) + ". " + w.t(c.label))
		}
	case kindInfo:
		line(w.t("q." + q.id))
	case kindReview:
		line(w.t("q.review"))
		if m.applying {
			line(w.t("applying"))
		}
	case kindSecret:
		line(w.t("q." + q.id))
		line("> " + strings.Repeat("*", len(m.input)) + "_")
	default:
		line(w.t("q." + q.id))
		line("> " + string(m.input) + "_")
		if d := w.defaultFor(m.idx); d != "" && len(m.input) == 0 {
			line("  " + w.t("default", d))
		}
	}
	if m.err != "" {
		line("")
		for _, l := range wrap("! "+m.err, 78) {
			line(l)
		}
	}
	if m.warn != "" {
		line("")
		for _, l := range wrap(m.warn+" "+w.t("warn.again"), 78) {
			line(l)
		}
	}
	line("")
	switch q.kind {
	case kindChoice:
		line(w.t("keys.choice"))
	case kindReview:
		line(w.t("keys.review"))
	default:
		line(w.t("keys.text"))
	}
	return b.String()
}

// wrap breaks s into lines of at most width runes at spaces.
func wrap(s string, width int) []string {
	var out []string
	for para := range strings.SplitSeq(s, "\n") {
		var cur []rune
		for _, word := range strings.Fields(para) {
			wr := []rune(word)
			if len(cur) > 0 && len(cur)+1+len(wr) > width {
				out = append(out, string(cur))
				cur = nil
			}
			if len(cur) > 0 {
				cur = append(cur, ' ')
			}
			cur = append(cur, wr...)
		}
		out = append(out, string(cur))
	}
	return out
}
