"""perfsum.py -- summarises `perf script -F tid,time,event,trace` output of
uprobes/uretprobes (bench/run.py's profile scenario): per probed function,
calls, mean/p50/p99/max duration and share of wall time; SQL text of
duckdb_query/duckdb_prepare is shortened to its first words.

Usage: perf script -i perf.data -F tid,time,event,trace | python3 bench/perfsum.py /dev/stdin
"""
import sys, re, collections
stacks=collections.defaultdict(list)
dur=collections.defaultdict(list)
first=last=None
for line in open(sys.argv[1]):
    m=re.match(r'\s*(\d+)\s+([\d.]+):\s+probe_(\w+):(\w+?):?\s+\(([^)]*)\)\s*(.*)', line)
    if not m: continue
    tid,t,lib,ev,addr,rest=m.groups(); t=float(t)
    first = first if first is not None else t; last=t
    if ev.endswith('__return'):
        b=ev[:-8]
        st=stacks[(tid,b)]
        if st:
            t0,label=st.pop()
            if not st: dur[label].append(t-t0)
    else:
        label=ev
        mm=re.search(r'sql="(.*)"',rest)
        if mm:
            s=mm.group(1)
            s=re.sub(r'"[^"]*"','T',s)
            label=ev+': '+' '.join(s.split()[:4])[:60]
        stacks[(tid,ev)].append((t,label))
T=last-first
rows=[]
for k,v in dur.items():
    v.sort(); n=len(v)
    rows.append((sum(v),k,n,v))
rows.sort(reverse=True)
print(f"span {T:.2f}s")
for tot,k,n,v in rows:
    print(f"{100*tot/T:5.1f}% of wall  n={n:5d} ({n/T:6.0f}/s) mean={1e3*tot/n:7.3f}ms p50={1e3*v[n//2]:7.3f} p99={1e3*v[min(n-1,int(n*.99))]:7.2f} max={1e3*v[-1]:7.1f}  {k}")
