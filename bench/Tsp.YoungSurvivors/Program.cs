using System.Globalization;
using System.Runtime.InteropServices;
using Microsoft.Diagnostics.Runtime;

// What a young collection would keep of a process's heap, and why: the young objects reachable from
// the runtime's roots (stacks included), and those reachable only from dead objects of older
// generations, which a young collection keeps as well (it takes every older object as alive). The
// second set is named by the dead object's type. docs/profiling.md, "What a young collection keeps".
//   dotnet bench/Tsp.YoungSurvivors/bin/Release/net10.0/Tsp.YoungSurvivors.dll DUMP
// DUMP: `dotnet-dump collect -p PID --type Full`, on this machine (the runtime's own DAC reads it).
if (args.Length is not (1 or 2))
{
    Console.Error.WriteLine("usage: Tsp.YoungSurvivors DUMP [TYPE: who references its gen1 objects]");
    return 2;
}

using var target = DataTarget.LoadDump(args[0]);
var dac = Path.Combine(RuntimeEnvironment.GetRuntimeDirectory(), "libmscordaccore.so");
// The dump may not record the runtime's version; the DAC of the runtime on this machine is the one.
var heap = target.ClrVersions[0].CreateRuntime(dac, ignoreMismatch: true).Heap;

Generation GenerationOf(ulong address) => heap.GetSegmentByAddress(address)?.GetGeneration(address) ?? Generation.Unknown;

var live = new HashSet<ulong>();
var pending = new Stack<ulong>();
foreach (var root in heap.EnumerateRoots())
{
    if (root.Object.Address != 0 && live.Add(root.Object.Address))
    {
        pending.Push(root.Object.Address);
    }
}

while (pending.Count > 0)
{
    foreach (var reference in heap.GetObject(pending.Pop()).EnumerateReferenceAddresses(carefully: true))
    {
        if (reference != 0 && live.Add(reference))
        {
            pending.Push(reference);
        }
    }
}

// The heap is walked once: every question below is asked of this list.
var objects = heap.EnumerateObjects(carefully: true).Where(o => o.IsValid && !o.IsFree).Select(o => (Object: o, Generation: GenerationOf(o.Address))).ToList();
var young = objects.Where(o => o.Generation == Generation.Generation0).ToDictionary(o => o.Object.Address, o => o.Object);
var youngLive = young.Values.Where(o => live.Contains(o.Address)).ToList();

// From each dead older object's references into gen0, everything young (and not alive) they reach.
var heldByDead = new HashSet<ulong>();
var byHolder = new Dictionary<string, int>(StringComparer.Ordinal);
foreach (var (old, generation) in objects)
{
    if (generation is not (Generation.Generation1 or Generation.Generation2 or Generation.Large or Generation.Pinned) || live.Contains(old.Address))
    {
        continue;
    }

    foreach (var reference in old.EnumerateReferenceAddresses(carefully: true))
    {
        if (!young.ContainsKey(reference) || live.Contains(reference) || !heldByDead.Add(reference))
        {
            continue;
        }

        var reached = 1;
        pending.Push(reference);
        while (pending.Count > 0)
        {
            foreach (var next in young[pending.Pop()].EnumerateReferenceAddresses(carefully: true))
            {
                if (young.ContainsKey(next) && !live.Contains(next) && heldByDead.Add(next))
                {
                    reached++;
                    pending.Push(next);
                }
            }
        }

        var holder = $"{old.Type?.Name} (gen{(int)generation})";
        byHolder[holder] = byHolder.GetValueOrDefault(holder) + reached;
    }
}

var held = heldByDead.Select(a => young[a]).ToList();
Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
    $"gen0: {young.Count} objects, {Kib(young.Values)} KiB; alive {youngLive.Count} objects, {Kib(youngLive)} KiB; held only by dead older objects {held.Count} objects, {Kib(held)} KiB"));
Console.WriteLine("held only by dead older objects, by the holder's type (young objects reached):");
foreach (var (holder, reached) in byHolder.OrderByDescending(h => h.Value).Take(20))
{
    Console.WriteLine($"  {reached,8}  {holder}");
}

PrintByType("held only by dead older objects, by type:", held);
// gen1 holds what young collections promoted since the last gen1 collection, dead since or not:
// what those collections kept, whatever kept it.
var promoted = objects.Where(o => o.Generation == Generation.Generation1).Select(o => o.Object).ToList();
PrintByType($"gen1 (promoted since the last gen1 collection): {promoted.Count} objects, {Kib(promoted)} KiB, {Kib(promoted.Where(o => live.Contains(o.Address)))} KiB still alive; by type:", promoted);
PrintByType("alive, by type:", youngLive);
if (args.Length == 2)
{
    var targets = promoted.Where(o => o.Type?.Name == args[1]).Select(o => o.Address).ToHashSet();
    var referrers = new Dictionary<string, int>(StringComparer.Ordinal);
    foreach (var (o, generation) in objects)
    {
        foreach (var reference in o.EnumerateReferenceAddresses(carefully: true))
        {
            if (targets.Contains(reference))
            {
                var key = $"{o.Type?.Name} (gen{(int)generation}, {(live.Contains(o.Address) ? "alive" : "dead")})";
                referrers[key] = referrers.GetValueOrDefault(key) + 1;
            }
        }
    }

    Console.WriteLine($"gen1 {args[1]}: {targets.Count}, referenced from:");
    foreach (var (referrer, count) in referrers.OrderByDescending(r => r.Value).Take(15))
    {
        Console.WriteLine($"  {count,8}  {referrer}");
    }
}

return 0;

static long Kib(IEnumerable<ClrObject> objects) => objects.Sum(o => (long)o.Size) / 1024;

static void PrintByType(string title, IEnumerable<ClrObject> objects)
{
    Console.WriteLine(title);
    foreach (var type in objects.GroupBy(o => o.Type?.Name ?? "?").Select(g => (Name: g.Key, Count: g.Count(), Kib: Kib(g))).OrderByDescending(t => t.Kib).Take(25))
    {
        Console.WriteLine($"  {type.Kib,6} KiB {type.Count,7}  {type.Name}");
    }
}
