package activities

import (
	"context"
	"fmt"

	"github.com/instructflow/instructflow/chat"
	"github.com/instructflow/instructflow/dataset"
	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/runspec"
	"github.com/instructflow/instructflow/stage"
	"github.com/instructflow/instructflow/storage/postgres"
	"github.com/instructflow/instructflow/tokenizer"
)

// runData is a run's data as its stages read it: the rows of the datasets
// the spec names (data.sft, data.prompts) or of its source, rendered by its
// chat template and cut to its token limits, the same way in every stage.
// Cut and Dropped count what the limits did.
type runData struct {
	db      database
	data    runspec.Data
	tmpl    chat.Template
	tok     tokenizer.Tokenizer
	context int // the model's positions

	Cut, Dropped int
}

func (a *Activities) runData(ctx context.Context, s runspec.Spec) (*runData, error) {
	tok, err := a.tokenizerOf(ctx, s)
	if err != nil {
		return nil, err
	}
	tmpl, err := s.Template()
	if err != nil {
		return nil, errkind.BadInputf("%v", err)
	}
	return &runData{db: a.DB, data: s.Data, tmpl: tmpl, tok: tok, context: s.Model.Context}, nil
}

// prompt is a prompt to sample from: its stored text (how labels and
// reports name it) and its rendering.
type prompt struct {
	Text, Rendered string
}

// Texts are the stored texts of ps.
func texts(ps []prompt) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Text
	}
	return out
}

// renderedOf are the renderings of ps.
func renderedOf(ps []prompt) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Rendered
	}
	return out
}

// prompts returns the run's prompts of a split, rendered; reserve is the
// tokens a stage samples after each, which must fit the context too.
func (d *runData) prompts(ctx context.Context, split dataset.Split, reserve int) ([]prompt, error) {
	var stored []postgres.StoredPrompt
	if name := d.promptSet(); name != "" {
		var err error
		if stored, err = d.db.DatasetPrompts(ctx, name, split); err != nil {
			return nil, err
		}
	} else {
		texts, err := d.db.Prompts(ctx, d.data.Source, string(split))
		if err != nil {
			return nil, err
		}
		stored = make([]postgres.StoredPrompt, len(texts))
		for i, t := range texts {
			stored[i].Text = t
		}
	}
	out := make([]prompt, 0, len(stored))
	for _, p := range stored {
		r, _, cut, ok, err := d.fitPrompt(p.Text, p.Turns, reserve)
		if err != nil {
			return nil, err
		}
		d.count(cut, ok)
		if ok {
			out = append(out, prompt{Text: p.Text, Rendered: r})
		}
	}
	return out, nil
}

// promptSet is the dataset the prompts come from ("" = data.source).
func (d *runData) promptSet() string {
	if d.data.Prompts != "" {
		return d.data.Prompts
	}
	return d.data.SFT
}

// demonstrations returns the run's demonstrations of a split, rendered
// and cut to fit.
func (d *runData) demonstrations(ctx context.Context, split dataset.Split) ([]stage.Example, error) {
	var rows []dataset.Example
	if d.data.SFT != "" {
		var err error
		if rows, err = d.db.DatasetDemonstrations(ctx, d.data.SFT, split); err != nil {
			return nil, err
		}
	} else {
		pairs, err := d.db.Demonstrations(ctx, d.data.Source, string(split))
		if err != nil {
			return nil, err
		}
		rows = make([]dataset.Example, len(pairs))
		for i, p := range pairs {
			rows[i] = dataset.Example{Prompt: p.Prompt, Target: p.Response}
		}
	}
	out := make([]stage.Example, 0, len(rows))
	for _, r := range rows {
		ex, ok, err := d.example(r.Prompt, r.Turns, r.Target, 0) // SFT's sequence may be one past the context: the last token is only a target
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, ex)
		}
	}
	return out, nil
}

// example renders a prompt and one response (a demonstration, a label's
// response, a sample) as the model reads them, cut to the limits; ok is
// false for a row that does not fit the context, with extra tokens after
// the response, and is dropped.
func (d *runData) example(text string, turns []chat.Message, response string, extra int) (stage.Example, bool, error) {
	p, out, ok, err := d.fit(text, turns, []string{response}, extra)
	if err != nil || !ok {
		return stage.Example{}, false, err
	}
	return stage.Example{Prompt: p, Response: out[0]}, true, nil
}

// comparison renders a comparison's prompt and responses as the reward
// model reads them (with the end of text after each response); ok is
// false when a response does not fit, and the comparison is dropped.
func (d *runData) comparison(text string, turns []chat.Message, responses []string) (string, []string, bool, error) {
	return d.fit(text, turns, responses, 1)
}

// fit renders a row (a prompt and its targets) cut to the limits, each
// target with extra tokens after it in the context, and counts the row
// once: cut when its prompt or a target was, dropped when it does not fit.
func (d *runData) fit(text string, turns []chat.Message, responses []string, extra int) (string, []string, bool, error) {
	p, n, cut, ok, err := d.fitPrompt(text, turns, 0)
	out := make([]string, len(responses))
	for i, r := range responses {
		if err != nil || !ok {
			break
		}
		var rcut bool
		out[i], rcut, ok, err = d.fitTarget(r, n, extra)
		cut = cut || rcut
	}
	if err != nil {
		return "", nil, false, err
	}
	d.count(cut, ok)
	return p, out, ok, nil
}

// fitTarget renders a target and cuts it at the right to
// data.max_response_tokens; ok is false when it does not fit the context
// after a prompt of n tokens, with extra tokens after it.
func (d *runData) fitTarget(response string, n, extra int) (r string, cut, ok bool, err error) {
	r = d.tmpl.Target(response)
	ids, err := d.tok.Encode(r)
	if err != nil {
		return "", false, false, errkind.BadInputf("data: response %.40q: %v", response, err)
	}
	if max := d.data.MaxResponseTokens; max > 0 && len(ids) > max {
		if r, ok = d.keep(ids, max, false); !ok {
			return "", false, false, nil
		}
		cut, ids = true, ids[:max]
	}
	if d.context > 0 && n+len(ids)+extra > d.context {
		return "", cut, false, nil
	}
	return r, cut, true, nil
}

// count counts a row as cut or dropped.
func (d *runData) count(cut, ok bool) {
	switch {
	case !ok:
		d.Dropped++
	case cut:
		d.Cut++
	}
}

// scored is a sampled reply after its rendered prompt as a reward model
// reads it (the template's target form, then the end of text), the prompt
// cut from the left when both do not fit the context; cut says whether it
// was.
func (d *runData) scored(rendered, reply string) (ex stage.Example, cut bool, err error) {
	ex = stage.Example{Prompt: rendered, Response: d.tmpl.Target(reply)}
	rids, err := d.tok.Encode(ex.Response)
	if err != nil {
		return stage.Example{}, false, errkind.BadInputf("eval: reply %.40q: %v", reply, err)
	}
	pids, err := d.tok.Encode(rendered)
	if err != nil {
		return stage.Example{}, false, errkind.BadInputf("eval: prompt %.40q: %v", rendered, err)
	}
	room := d.context - len(rids) - 1
	if len(pids) <= room {
		return ex, false, nil
	}
	var ok bool
	if room > 0 {
		ex.Prompt, ok = d.keep(pids, room, true)
	}
	if !ok {
		return stage.Example{}, false, errkind.BadInputf("eval: a reply of %d tokens leaves its prompt no room in a reward model's context of %d; lower ppo.max_new_tokens", len(rids), d.context)
	}
	return ex, true, nil
}

// fitPrompt renders a prompt and cuts it from the left to
// data.max_prompt_tokens, returning it with its length in tokens (at most
// the limit); ok is false when it does not fit the context with reserve
// tokens after it.
func (d *runData) fitPrompt(text string, turns []chat.Message, reserve int) (p string, n int, cut, ok bool, err error) {
	p, err = d.tmpl.Render(chat.Turns(text, turns), text)
	if err != nil {
		return "", 0, false, false, errkind.BadInputf("data.template: prompt %.40q: %v", text, err)
	}
	ids, err := d.tok.Encode(p)
	if err != nil {
		return "", 0, false, false, errkind.BadInputf("data: prompt %.40q: %v", text, err)
	}
	n = len(ids)
	if max := d.data.MaxPromptTokens; max > 0 && n > max {
		if p, ok = d.keep(ids, max, true); !ok {
			return "", 0, false, false, nil
		}
		cut, n = true, max
	}
	if n == 0 || d.context > 0 && n+reserve > d.context {
		return "", 0, cut, false, nil
	}
	return p, n, cut, true, nil
}

// keep decodes the last (fromLeft) or first max tokens of ids, shortening
// further until the text encodes back to at most max tokens (a byte-level
// BPE may merge differently at a new edge, or a cut may split a character).
func (d *runData) keep(ids []int32, max int, fromLeft bool) (string, bool) {
	for k := max; k > 0; k-- {
		part := ids[:k]
		if fromLeft {
			part = ids[len(ids)-k:]
		}
		s, err := d.tok.Decode(part)
		if err != nil {
			continue
		}
		if back, err := d.tok.Encode(s); err == nil && len(back) <= max && len(back) > 0 {
			return s, true
		}
	}
	return "", false
}

// what names where the data comes from, for messages.
func (d *runData) what() string {
	if d.data.SFT != "" {
		return fmt.Sprintf("dataset %q (data.sft)", d.data.SFT)
	}
	return fmt.Sprintf("source %q (data.source; load the demo task with `instructflow data load-demo`)", d.data.Source)
}

// promptsWhat names where the prompts come from, for messages.
func (d *runData) promptsWhat() string {
	if name := d.promptSet(); name != "" {
		return fmt.Sprintf("dataset %q (data.prompts)", name)
	}
	return fmt.Sprintf("source %q (data.source)", d.data.Source)
}

// replies cuts samples where the template ends the assistant's turn,
// keeping the distinct non-empty ones in order.
func (d *runData) replies(samples []string) []string {
	out := samples[:0:0]
	seen := map[string]bool{}
	for _, s := range samples {
		if r := d.tmpl.Reply(s); r != "" && !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	return out
}

// counts are the cut and dropped rows, for a stage's metrics.
func (d *runData) counts(m map[string]float64) map[string]float64 {
	if m == nil {
		m = map[string]float64{}
	}
	m["rows_cut"], m["rows_dropped"] = float64(d.Cut), float64(d.Dropped)
	return m
}
