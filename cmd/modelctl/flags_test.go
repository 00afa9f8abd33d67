package main

import (
	"bytes"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/modelctl/modelctl/client/model"
)

func TestParseSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
		err  bool
	}{
		{"64MiB", 64 << 20, false},
		{"1GiB", 1 << 30, false},
		{"512K", 512 << 10, false},
		{"4096", 4096, false},
		{"16 MiB", 16 << 20, false},
		{"0", 0, true},
		{"-1MiB", 0, true},
		{"lots", 0, true},
		{"2048GiB", 0, true}, // over the 1 TiB bound
	} {
		got, err := xferParseSize(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("xferParseSize(%q) = %d, %v; want %d (error %v)", tt.in, got, err, tt.want, tt.err)
		}
	}
}

// execute runs cmd with args, as the root command would, and returns its
// error.
func execute(cmd *cobra.Command, args ...string) error {
	cmd.SetArgs(args)
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	return cmd.Execute()
}

func TestPushOptions(t *testing.T) {
	var got *pushFlags
	var gotModel, ref string
	cmd := pushCmd(func(_ *cobra.Command, pf *pushFlags, m, r string) error {
		got, gotModel, ref = pf, m, r
		return nil
	})
	err := execute(cmd, "out/m.onnx", "127.0.0.1:5000/team/m:int8",
		"-t", "latest", "--tag", "prod", "--bench", "r.json", "--allow-failed-gates", "--parent", "127.0.0.1:5000/team/m:fp32",
		"--name", "audio", "--model-version", "2", "--precision", "int8", "--quantization", "dynamic",
		"--quant-param", "a=1", "--quant-param", "b=2", "--doc", "README.md", "--format", "gguf",
		"--plain-http", "--insecure", "--cache-dir", "/c", "--parallel", "3", "--chunk-size", "16MiB", "--json")
	if err != nil {
		t.Fatal(err)
	}
	want := model.PushOptions{
		Tags: []string{"latest", "prod"}, Bench: "r.json", AllowFailedGates: true, Parent: "127.0.0.1:5000/team/m:fp32",
		Docs: []string{"README.md"}, Name: "audio", Version: "2", Precision: "int8",
		Quantization: "dynamic", QuantParams: []string{"a=1", "b=2"}, Format: "gguf",
	}
	if !reflect.DeepEqual(got.opts, want) {
		t.Errorf("options = %+v\nwant      %+v", got.opts, want)
	}
	if gotModel != "out/m.onnx" || ref != "127.0.0.1:5000/team/m:int8" {
		t.Errorf("arguments = %q %q", gotModel, ref)
	}
	cf := got.clientFlags
	if !cf.plainHTTP || !cf.insecure || cf.cacheDir != "/c" || cf.parallel != 3 || cf.chunkSize != "16MiB" || !cf.json {
		t.Errorf("connection flags = %+v", cf)
	}
	c, err := cf.client(&bytes.Buffer{})
	if err != nil || c == nil {
		t.Fatalf("client from the flags: %v", err)
	}
}

func TestPushNeedsTwoArguments(t *testing.T) {
	ran := false
	err := execute(pushCmd(func(*cobra.Command, *pushFlags, string, string) error { ran = true; return nil }), "m.onnx")
	if err == nil || ran {
		t.Fatalf("push with one argument: ran %v, err %v", ran, err)
	}
}

func TestPullOptions(t *testing.T) {
	var got *pullOptions
	run := func(_ *cobra.Command, o *pullOptions, _ string) error { got = o; return nil }
	if err := execute(pullCmd(run), "127.0.0.1:5000/team/m:int8"); err == nil || !strings.Contains(err.Error(), "-o DIR") {
		t.Fatalf("pull without -o: %v", err)
	}
	err := execute(pullCmd(run), "127.0.0.1:5000/team/m:int8", "-o", "dir", "--require-signature",
		"--signature-key", "a.pub", "--signature-key", "b.pub")
	if err != nil {
		t.Fatal(err)
	}
	want := model.PullOptions{RequireSignature: true, SignatureKeys: []string{"a.pub", "b.pub"}}
	if got.dir != "dir" || !reflect.DeepEqual(got.opts, want) {
		t.Errorf("pull options = %q %+v; want dir %+v", got.dir, got.opts, want)
	}
}

func TestBadChunkSize(t *testing.T) {
	cf := clientFlags{chunkSize: "huge", cacheDir: t.TempDir()}
	if _, err := cf.client(&bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "--chunk-size") {
		t.Fatalf("--chunk-size huge: %v", err)
	}
}

// Every command that reaches a registry takes the same connection flags
// from one struct; the commands that move no blobs take only those.
func TestConnectionFlags(t *testing.T) {
	root := newRootCmd()
	conn := []string{"plain-http", "insecure", "json"}
	transfer := []string{"cache-dir", "parallel", "chunk-size", "s3-endpoint", "s3-region"}
	for _, tt := range []struct {
		name     string
		transfer bool
	}{
		{"push", true}, {"pull", true}, {"sync", true}, {"pin", true}, {"inspect", true}, {"ls", true},
		{"rollback", true}, {"tag", false}, {"history", false}, {"sign", false}, {"verify-signature", false}, {"doctor", false},
	} {
		cmd, _, err := root.Find([]string{tt.name})
		if err != nil || cmd.Name() != tt.name {
			t.Errorf("%s: not a command (%v)", tt.name, err)
			continue
		}
		for _, f := range conn {
			if cmd.Flags().Lookup(f) == nil {
				t.Errorf("%s has no --%s", tt.name, f)
			}
		}
		for _, f := range transfer {
			if (cmd.Flags().Lookup(f) != nil) != tt.transfer {
				t.Errorf("%s: --%s present = %v, want %v", tt.name, f, !tt.transfer, tt.transfer)
			}
		}
	}
}

// A reference without a host takes the default registry of the settings
// file, in every command that names an artifact.
func TestDefaultRegistry(t *testing.T) {
	cfg := t.TempDir() + "/config.yaml"
	if err := os.WriteFile(cfg, []byte("default_registry: registry.lan:5000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("MODELCTL_CONFIG", cfg)
	var cf clientFlags
	for in, want := range map[string]string{
		"team/m:v1":                 "registry.lan:5000/team/m:v1",
		"127.0.0.1:5000/team/m:v1":  "127.0.0.1:5000/team/m:v1",
		"s3://bucket/prefix/m:v1":   "s3://bucket/prefix/m:v1",
		"other.lan/team/m@sha256:0": "other.lan/team/m@sha256:0",
	} {
		if got := cf.expandRef(in); got != want {
			t.Errorf("expandRef(%q) = %q, want %q", in, got, want)
		}
	}
}
