package runspec

import (
	"os"
	"strings"
	"testing"

	"github.com/instructflow/instructflow/runstate"
)

func TestExternalTrainerExampleReadsAndValidates(t *testing.T) {
	f, err := os.Open("../examples/external-trainer.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, err := Read(f, "external-trainer.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s.ID = "x1"
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if !s.SFT.External() || !s.RM.External() || s.PPO.External() || s.RM.Args["device"] != "auto" || len(s.SFT.Command) != 5 {
		t.Errorf("trainers: sft %+v, rm %+v, ppo %+v", s.SFT.Trainer, s.RM.Trainer, s.PPO.Trainer)
	}
}

// TestTrainerArgs: args take keys the spec does not know, as JSON scalars
// where they parse (else strings); other unknown keys are still refused.
func TestTrainerArgs(t *testing.T) {
	s, _ := Preset("micro")
	s.ID = "r1"
	before := s.StageHash(runstate.SFT)
	if err := s.Set([]string{"sft.trainer=exec", "sft.command=[python3,train.py]", "sft.args.lr=1e-4", "sft.args.Name=run-a", "sft.args.fast=true", "ppo.args.x=1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"lr": 1e-4, "name": "run-a", "fast": true}
	for k, v := range want {
		if s.SFT.Args[k] != v {
			t.Errorf("sft.args.%s = %#v, want %#v", k, s.SFT.Args[k], v)
		}
	}
	if s.PPO.Args["x"] != float64(1) || len(s.SFT.Command) != 2 {
		t.Errorf("ppo.args %v, sft.command %v", s.PPO.Args, s.SFT.Command)
	}
	if s.StageHash(runstate.SFT) == before {
		t.Error("the SFT trainer's settings leave its stage hash alone: a finished stage would be reused")
	}
	for _, bad := range []string{"sft.argz.lr=1", "labels.args.x=1", "sft.args=1"} {
		c := s
		if err := c.Set([]string{bad}); err == nil {
			t.Errorf("--set %s accepted", bad)
		}
	}
}

func TestTrainerValidation(t *testing.T) {
	for set, want := range map[string]string{
		"sft.trainer=exec":     "sft.command: empty",
		"rm.command=[x]":       `rm.command: set, but rm.trainer is ""`,
		"ppo.trainer=slurm":    `ppo.trainer: "slurm": use builtin`,
		"sft.grace=-1s":        "sft.grace: must not be negative",
		"sft.template={{.Nope": "sft.template",
		"rm.trainer=builtin":   "",
		"sft.trainer=exec;sft.command=[a];sft.grace=1m": "",
	} {
		s, _ := Preset("micro")
		s.ID = "r1"
		if err := s.Set(strings.Split(set, ";")); err != nil {
			t.Fatalf("%s: %v", set, err)
		}
		err := s.Validate()
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: %v", set, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%s: error %v, want one with %q", set, err, want)
		}
	}
}
