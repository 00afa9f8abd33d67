# Shell helpers shared by the scripts: source it as
#   . scripts/lib.sh        (from the repository root)

# free_port prints a free TCP port on 127.0.0.1.
free_port() {
	/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# median prints the median of the numbers on stdin, one a line.
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# median_of prints the median of its arguments.
median_of() { printf '%s\n' "$@" | median; }
