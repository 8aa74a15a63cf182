# One-off diagnostic of the study (seed 0 only, a selection seed): how well each recipe of the
# voter's own reference update separates honest from label-flipped proposals. Output: diag_own_update.txt.
# Separation of honest vs malicious proposals under several own-update recipes (seed 0 data, global = clean FedAvg after R rounds)
import sys, random, torch, numpy as np
sys.path.insert(0,'scripts')
import _review_study as rs
from fl.simulation import SimulationConfig, load_federated_data, derived_seed
from fl.tasks import task_of
from fl.defences.review import cosine_similarities
torch.set_num_threads(1)
c=SimulationConfig(seed=0); d=load_federated_data(c); t=task_of(c).make_model(d,0)
tr=rs.LendingTrainer(t,d,c.lr)
flat=torch.cat([p.detach().reshape(-1) for p in t.parameters()])
allc=list(range(50))
for R in range(1,61):
    drawn = random.Random(derived_seed(0, 13, R)).sample(allc, 50)
    u=tr.updates(flat, drawn[:10], [False]*10); flat=flat+u.mean(0)
    if R not in (5,30,60): continue
    H=tr.updates(flat, allc, [False]*50); M=tr.updates(flat, allc, [True]*50)
    # trainval data for own
    recipes={}
    for E in (1,5,10,20):
        recipes[f'adam{E}ep']=tr.multi_step_updates(flat, allc, E)
    recipes['grad']=-tr.gradients(flat, allc, [False]*50)
    names=tr.names; sizes=tr.sizes
    print('round',R)
    for name,own in recipes.items():
        ch=[];cm=[]
        for v in range(50):
            cs_h=cosine_similarities(H, own[v]); cs_m=cosine_similarities(M, own[v])
            ch+= [float(x) for i,x in enumerate(cs_h) if i!=v]; cm+=[float(x) for i,x in enumerate(cs_m) if i!=v]
        ch=np.array(ch); cm=np.array(cm)
        # per-proposal: fraction of voters with cos>tau
        for tau in (0.0,):
            pass
        from sklearn.metrics import roc_auc_score
        auc=roc_auc_score(np.r_[np.ones(len(ch)),np.zeros(len(cm))], np.r_[ch,cm])
        print(f'  {name:8s} honest cos q05 {np.quantile(ch,.05):.3f} q50 {np.median(ch):.3f} | mal q50 {np.median(cm):.3f} q95 {np.quantile(cm,.95):.3f} | pair AUC {auc:.4f} | honest<=0 {np.mean(ch<=0)*100:.1f}% mal>0 {np.mean(cm>0)*100:.1f}% mal>-0.1 {np.mean(cm>-0.1)*100:.1f}% hon<=-0.1 {np.mean(ch<=-0.1)*100:.1f}%')
    # layerwise: output layer only
    off=sum(sizes[:-2])
    own=recipes['adam5ep']
    ch=[];cm=[]
    for v in range(50):
        ch+=[float(x) for i,x in enumerate(cosine_similarities(H[:,off:], own[v,off:])) if i!=v]
        cm+=[float(x) for i,x in enumerate(cosine_similarities(M[:,off:], own[v,off:])) if i!=v]
    ch=np.array(ch); cm=np.array(cm)
    print(f'  lastlayer adam5 honest<=0 {np.mean(ch<=0)*100:.1f}% mal>0 {np.mean(cm>0)*100:.1f}%')
