using System.Globalization;
using System.Runtime.InteropServices;
using Microsoft.Diagnostics.Runtime;

// What a young collection would keep of a process's heap, and why: the young objects reachable from
// the runtime's roots (stacks included), and those reachable only from dead objects of older
// generations, which a young collection keeps as well (it takes every older object as alive). The
// second set is named by the dead object's type. docs/profiling.md, "What a young collection keeps".
//   dotnet bench/Tsp.YoungSurvivors/bin/Release/net10.0/Tsp.YoungSurvivors.dll DUMP
// DUMP: `dotnet-dump collect -p PID --type Full`, on this machine (the runtime's own DAC reads it).
if (args.Length != 1)
{
    Console.Error.WriteLine("usage: Tsp.YoungSurvivors DUMP");
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

var young = heap.EnumerateObjects().Where(o => o.IsValid && !o.IsFree && GenerationOf(o.Address) == Generation.Generation0).ToDictionary(o => o.Address);
var youngLive = young.Values.Where(o => live.Contains(o.Address)).ToList();

// From each dead older object's references into gen0, everything young (and not alive) they reach.
var heldByDead = new HashSet<ulong>();
var byHolder = new Dictionary<string, int>(StringComparer.Ordinal);
foreach (var old in heap.EnumerateObjects())
{
    var generation = old.IsValid && !old.IsFree ? GenerationOf(old.Address) : Generation.Unknown;
    if (generation is not (Generation.Generation1 or Generation.Generation2 or Generation.Large or Generation.Pinned or Generation.Frozen) || live.Contains(old.Address))
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
PrintByType("alive, by type:", youngLive);
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
