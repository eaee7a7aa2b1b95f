# A script of everyday busybox applets whose output does not depend on the
# machine. tests/tests/exec.rs runs it under Tessera (make exec) and with
# the host's busybox, and compares the outputs.
set -e
cd "$(mktemp -d)"
echo "start"
printf '%s-%d-%x\n' word 42 255
seq 1 5 | tr '\n' ' '; echo
seq 10 -3 1 | sort -n | tr '\n' ,; echo
printf 'b\na\nc\na\n' | sort | uniq -c | sed 's/^ *//'
printf 'one two three\nfour five\n' > words.txt
wc -l < words.txt
wc -w < words.txt
head -n 1 words.txt
tail -n 1 words.txt
cut -d ' ' -f 2 words.txt
tr a-z A-Z < words.txt
sed -n '2p' words.txt
sed 's/o/0/g' words.txt
awk '{ print NF, $1 }' words.txt
awk 'BEGIN { s = 0; for (i = 1; i <= 10; i++) s += i; print s }'
grep -c o words.txt
grep -n five words.txt
grep -v one words.txt
expr 6 \* 7
expr length "tessera"
test -f words.txt && echo "is a file"
[ -d . ] && echo "is a dir"
basename /a/b/c.txt .txt
dirname /a/b/c.txt
mkdir -p d1/d2/d3
touch d1/d2/d3/file
ls -1 d1/d2/d3
cp words.txt copy.txt
cmp words.txt copy.txt && echo same
mv copy.txt moved.txt
ls -1
rm moved.txt
ln -s words.txt link.txt
readlink link.txt
cat link.txt | wc -c
md5sum words.txt | cut -d ' ' -f 1
sha256sum words.txt | cut -d ' ' -f 1
sha1sum words.txt | cut -d ' ' -f 1
printf '1\n2\n3\n' | xargs echo args:
echo tee-data | tee teed.txt > /dev/null
cat teed.txt
dd if=words.txt of=dd.txt bs=4 count=2 2> /dev/null
cat dd.txt; echo
printf 'AB' | od -An -tx1 | tr -s ' '
printf 'hello' | hexdump -C | head -1
echo 'stressed' | rev
echo 'abcdefghij' | fold -w 3
printf '1\n2\n' > p1; printf 'a\nb\n' > p2; paste p1 p2
yes y | head -n 3 | tr '\n' ' '; echo
true && echo "true is true"
false || echo "false is false"
factor 360
printf 'a\nb\nc\n' > c1; printf 'b\nc\nd\n' > c2; cat c1 c2 | sort | uniq -d
find d1 | sort
stat -c '%s %n' words.txt
date -u -d @0 '+%Y-%m-%d %H:%M:%S'
printf '%03d|%-5s|%5.2f\n' 7 ab 3.14159
printf 'c\nb\na\n' | tac
printf 'x\ny\n' | nl -ba | tr -s ' \t' ' '
echo "compress me, compress me, compress me" | gzip | gunzip
echo "tessera" | base64
echo "dGVzc2VyYQo=" | base64 -d
echo $((17 % 5)) $((2 ** 10)) $((0x10))
x=abc; echo ${#x} ${x%c} ${x#a}
for i in 1 2 3; do printf '%s.' "$i"; done; echo
i=0; while [ $i -lt 3 ]; do i=$((i + 1)); done; echo "loop $i"
case "tessera" in tess*) echo "case matched";; esac
f() { echo "function $1"; }; f called
cat << 'HEREDOC'
here document line 1
here document line 2
HEREDOC
( cd d1 && pwd | sed 's|.*/||' )
echo "sub $(echo shell | tr a-z A-Z)"
{ echo grouped; echo commands; } | wc -l
sleep 0
sort -t: -k2 -n << 'DATA'
a:3
b:1
c:2
DATA
echo "end"
