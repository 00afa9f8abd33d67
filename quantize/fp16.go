package quantize

func (r *rewriter) fp16() error { return nil }
