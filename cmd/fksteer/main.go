// Command fksteer generates images with ONNX diffusion models, steered at inference time by
// Feynman-Kac particle sampling over reward models. Run `fksteer --help` for the commands.
package main

import "os"

func main() { os.Exit(execute(os.Args[1:])) }
